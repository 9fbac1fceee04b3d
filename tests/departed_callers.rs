//! A client that leaves in a way its server cannot read (its end of the pipe the server reads
//! is held open elsewhere, as another process may hold a FIFO or a standard input) is seen gone
//! when a reply to it cannot be written: the one-way handlers it started still run to
//! completion, as when the server sees it leave by reading.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use common::within;
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::pipes::{connect_pipes, serve_pipes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Semaphore};

/// Work that waits for the test.
#[rpc_core::service]
pub trait Chores {
    /// Waits until the test lets it, then reports that it is done; one-way.
    #[rpc(oneway)]
    async fn chore(&self);
    /// Reports that it started, waits until the test lets errand `n` end, then answers `n`;
    /// reports when it is dropped before that.
    async fn errand(&self, n: u32) -> u32;
}

/// What the handlers wait for and report.
struct Shared {
    chore_may_end: Semaphore,
    errand_may_end: [Semaphore; 2],
    events: mpsc::UnboundedSender<String>,
}

struct ChoresImpl(Arc<Shared>);

/// Reports that an errand was dropped unless disarmed.
struct Unfinished<'a>(Option<&'a mpsc::UnboundedSender<String>>, u32);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(events) = self.0 {
            let _ = events.send(format!("errand {} dropped", self.1));
        }
    }
}

impl Chores for ChoresImpl {
    async fn chore(&self) {
        let _ = self.0.events.send("chore started".into());
        if let Ok(permit) = self.0.chore_may_end.acquire().await {
            permit.forget();
        }
        let _ = self.0.events.send("chore done".into());
    }

    async fn errand(&self, n: u32) -> u32 {
        let mut unfinished = Unfinished(Some(&self.0.events), n);
        let _ = self.0.events.send(format!("errand {n} started"));
        if let Some(gate) = self.0.errand_may_end.get(n as usize) {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        unfinished.0 = None;
        n
    }
}

/// The client's end of the pipe it reads: says when it is dropped (once it is closed).
struct Reported<T> {
    inner: Option<T>,
    dropped: mpsc::UnboundedSender<&'static str>,
}

impl<T> Drop for Reported<T> {
    fn drop(&mut self) {
        // Closed before it is said: whoever hears it may count on it.
        drop(self.inner.take());
        let _ = self.dropped.send("read end dropped");
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Reported<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The client's end of the pipe it writes: neither closing it nor dropping it closes the pipe,
/// which the test is handed to keep open, and once `cut` what is written to it goes nowhere.
struct Kept<T> {
    inner: Option<T>,
    keep: mpsc::UnboundedSender<T>,
    cut: Arc<AtomicBool>,
}

impl<T> Drop for Kept<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let _ = self.keep.send(inner);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Kept<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.cut.load(Ordering::Acquire) {
            return Poll::Ready(Ok(buf.len()));
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn expect<T: AsRef<str>>(events: &mut mpsc::UnboundedReceiver<T>, event: &str) {
    let seen = within(event, events.recv()).await;
    assert_eq!(seen.as_ref().map(AsRef::as_ref), Some(event));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_handler_finishes_after_its_client_is_seen_gone_by_a_failed_write() {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        chore_may_end: Semaphore::new(0),
        errand_may_end: [Semaphore::new(0), Semaphore::new(0)],
        events: events_tx,
    });
    // One pipe each way; the server reads the first and writes the second.
    let (client_writes, server_reads) = tokio::io::duplex(64 * 1024);
    let (server_writes, client_reads) = tokio::io::duplex(64 * 1024);
    let mut config = ServerConfig::new();
    config.max_in_flight(3);
    let server = tokio::spawn(serve_pipes(
        server_reads,
        server_writes,
        ChoresServer::new(ChoresImpl(Arc::clone(&shared))),
        &config,
    ));
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let (keep_tx, mut kept) = mpsc::unbounded_channel();
    let cut = Arc::new(AtomicBool::new(false));
    let client: ChoresClient = within(
        "the handshake",
        connect_pipes(
            Reported {
                inner: Some(client_reads),
                dropped: dropped_tx,
            },
            Kept {
                inner: Some(client_writes),
                keep: keep_tx,
                cut: Arc::clone(&cut),
            },
            &ClientConfig::default(),
        ),
    )
    .await
    .expect("connect");
    within("the chore is sent", client.chore())
        .await
        .expect("sent");
    expect(&mut events, "chore started").await;
    let errands: Vec<_> = (0..2)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.errand(n).await })
        })
        .collect();
    let mut started = vec![
        within("an errand", events.recv()).await,
        within("an errand", events.recv()).await,
    ];
    started.sort();
    assert_eq!(
        started,
        [
            Some("errand 0 started".into()),
            Some("errand 1 started".into())
        ]
    );
    // Three handlers run: the server reads no more from this client. The client goes, and
    // nothing it writes on the way (its cancels) reaches the server.
    cut.store(true, Ordering::Release);
    for errand in errands {
        errand.abort();
        let _ = errand.await;
    }
    drop(client);
    expect(&mut dropped, "read end dropped").await;
    let _still_open = within("the client's write end", kept.recv()).await;
    // The reply of errand 0 cannot be written: the client is seen gone, and its call still in
    // flight is dropped.
    shared.errand_may_end[0].add_permits(1);
    expect(&mut events, "errand 1 dropped").await;
    // The one-way handler it started finishes all the same.
    shared.chore_may_end.add_permits(1);
    expect(&mut events, "chore done").await;
    let ended = within("the connection ends", server).await.expect("join");
    assert!(ended.is_err(), "ends with the write's error: {ended:?}");
}
