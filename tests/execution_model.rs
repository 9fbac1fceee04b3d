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

/// What a [`Logged`] byte stream saw, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    Read(usize),
    Write(usize),
}

/// A byte stream half that reports its reads and writes, and hands out at most `max_read`
/// bytes per read.
struct Logged<T> {
    inner: T,
    max_read: usize,
    log: tokio::sync::mpsc::UnboundedSender<Io>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Logged<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut room = vec![0; buf.remaining().min(self.max_read)];
        let mut limited = tokio::io::ReadBuf::new(&mut room);
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            let filled = limited.filled();
            buf.put_slice(filled);
            if !filled.is_empty() {
                let _ = self.log.send(Io::Read(filled.len()));
            }
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Logged<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                let _ = self.log.send(Io::Write(*n));
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

/// The replies to the calls of one read go out as soon as they are answered, a few at a time,
/// and before the server reads again: a client that keeps sending does not hold them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_the_calls_of_one_read_go_out_before_the_next_read() {
    use common::RawPeer;
    use rpc_core::frame::{FrameReader, FrameWriter};
    use rpc_core::protocol::Header;

    const CALLS: u64 = 50;
    const PER_READ: u64 = 10;
    let calls: Vec<Vec<u8>> = (0..CALLS)
        .map(|n| RawPeer::call_frame(n, "add", &(n as i64, 1i64)))
        .collect();
    let call_len = calls[0].len();
    assert!(calls.iter().all(|call| call.len() == call_len));

    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_io);
    let (log, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let serving = tokio::spawn(async move {
        let config = rpc_core::ServerConfig::default();
        let shutdown = rpc_core::CancellationToken::new();
        rpc_core::serve_connection(
            FrameReader::new(Logged {
                inner: server_read,
                max_read: PER_READ as usize * call_len,
                log: log.clone(),
            }),
            FrameWriter::new(Logged {
                inner: server_write,
                max_read: 0,
                log,
            }),
            rpc_core::PeerInfo::unknown(),
            common::ProbeServer::new(common::ProbeImpl::new()),
            &config,
            &shutdown,
        )
        .await
    });
    let (client_read, client_write) = tokio::io::split(client_io);
    let mut client = RawPeer::from_halves(Box::new(client_read), Box::new(client_write));
    client.send_hello().await;
    assert!(matches!(
        client.recv().await,
        Some((Header::Welcome { .. }, _))
    ));
    for handshake in ["the hello read", "the welcome written"] {
        within(handshake, seen.recv()).await.expect("logged");
    }

    // Every call in one write: the server finds more to read after each of its reads.
    client.send_raw(&calls.concat()).await.expect("send");
    let mut answered = Vec::new();
    while answered.len() < CALLS as usize {
        match client.recv().await {
            Some((Header::Reply { id, .. }, _)) => answered.push(id),
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (0..CALLS).collect::<Vec<_>>());

    // Each read is followed by the writes of its replies, in groups of at most eight (so that
    // the client gets the first ones while the server answers the rest), before the next read.
    let reads = (CALLS / PER_READ) as usize;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut written = 0;
    while groups.len() < reads || written < groups.len() * groups[0].iter().sum::<usize>() {
        match within("the server's reads and writes", seen.recv())
            .await
            .expect("logged")
        {
            Io::Read(n) => {
                assert_eq!(n, PER_READ as usize * call_len, "a read of {n} bytes");
                if let Some(last) = groups.last() {
                    assert_eq!(
                        last.iter().sum::<usize>(),
                        groups[0].iter().sum::<usize>(),
                        "every reply of the last read written before this one: {groups:?}"
                    );
                }
                groups.push(Vec::new());
            }
            Io::Write(n) => {
                groups.last_mut().expect("a write after a read").push(n);
                written += n;
            }
        }
    }
    let first = &groups[0];
    let reply_len = first.iter().sum::<usize>() / PER_READ as usize;
    assert!(
        first.len() >= 2,
        "ten replies in groups of at most eight: {groups:?}"
    );
    for group in &groups {
        assert!(group.iter().all(|&n| n <= 8 * reply_len), "{groups:?}");
    }
    drop(client);
    within("the connection to end", serving)
        .await
        .expect("join")
        .expect("served");
}
