//! The execution model of a connection: handlers that wait run in parallel, one-way calls take
//! effect in the order sent.

mod common;

use common::{release, within, Event, TestServer};

/// A handler that computes after its first `.await` holds its own thread, not the connection:
/// a second call on the same connection is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_computing_handler_does_not_hold_up_its_connection() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let computing = tokio::spawn({
        let client = client.clone();
        async move { client.compute(7).await }
    });
    server.expect_event(&Event::Computing(7)).await;
    // Same connection, while the handler above holds its thread.
    assert_eq!(
        within("a call beside a computing handler", client.add(2, 3))
            .await
            .expect("add"),
        5
    );
    assert!(
        !computing.is_finished(),
        "compute finished before it was released"
    );
    release(7);
    assert_eq!(
        within("the computing call", computing)
            .await
            .expect("join")
            .expect("compute"),
        7
    );
}

/// One-way handlers of a connection run one after another in the order sent, even when each
/// waits before its effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_take_effect_in_the_order_sent() {
    let mut server = TestServer::start();
    let client = server.client().await;
    const COUNT: u32 = 1000;
    for n in 0..COUNT {
        client.append(n).await.expect("append");
    }
    let mut seen = Vec::new();
    while seen.len() < COUNT as usize {
        match within("the next append", server.events.recv()).await {
            Some(Event::Appended(n)) => seen.push(n),
            Some(_) => {}
            None => panic!("server gone after {} appends", seen.len()),
        }
    }
    let out_of_order = seen.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(out_of_order, 0, "{out_of_order} appends out of order");
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
}

/// Counts the writes that reach the byte stream it wraps.
struct CountingWrites<W> {
    inner: W,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingWrites<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                self.writes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Calls that arrive together are answered together: the replies to the frames of one read
/// go out in one write, not one write each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_calls_that_arrive_together_go_out_together() {
    use futures_util::future::join_all;
    use rpc_core::frame::{FrameReader, FrameWriter};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_io);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = CountingWrites {
        inner: server_write,
        writes: Arc::clone(&writes),
    };
    let serving = tokio::spawn(async move {
        let config = rpc_core::ServerConfig::default();
        let shutdown = rpc_core::CancellationToken::new();
        rpc_core::serve_connection(
            FrameReader::new(server_read),
            FrameWriter::new(counted),
            rpc_core::PeerInfo::unknown(),
            common::ProbeServer::new(common::ProbeImpl::new()),
            &config,
            &shutdown,
        )
        .await
    });
    let (client_read, client_write) = tokio::io::split(client_io);
    let client: common::ProbeClient = rpc_core::connect(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
        &rpc_core::ClientConfig::default(),
    )
    .await
    .expect("connect");
    const CALLS: i64 = 50;
    let after_handshake = writes.load(Ordering::SeqCst);
    let sums = within(
        "the calls sent together",
        join_all((0..CALLS).map(|n| client.add(n, 1))),
    )
    .await;
    for (n, sum) in (0..CALLS).zip(sums) {
        assert_eq!(sum.expect("add"), n + 1);
    }
    // The first call goes out alone (it finds the connection idle), the others queue behind
    // it and go out together: two reads, a few writes, whatever the scheduling.
    let replies_writes = writes.load(Ordering::SeqCst) - after_handshake;
    assert!(
        replies_writes <= 5,
        "{CALLS} replies took {replies_writes} writes"
    );
    drop(client);
    within("the connection to end", serving)
        .await
        .expect("join")
        .expect("served");
}
