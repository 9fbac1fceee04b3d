//! A client that serves callbacks, at the limits of what it holds: a server that leaves while
//! the callbacks are at their limit is seen gone at once, and the client reads the replies to
//! its calls whatever it has queued of its own calls.

mod callback_peer;
mod common;

use callback_peer::{call_frame, connect, frame};
use common::within;
use rpc_core::frame::FrameRead;
use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME};

/// Over a Unix socket: the transport tells when the server closes its end.
#[cfg(unix)]
mod over_a_socket {
    use super::*;
    use callback_peer::{Echo, EchoServer, HubClient};
    use rpc_core::protocol::PROTOCOL_VERSION;
    use rpc_core::{ClientConfig, RpcError};

    /// A callback that tells it has started, then never finishes.
    struct Stuck(tokio::sync::mpsc::UnboundedSender<u32>);

    impl Echo for Stuck {
        async fn echo(&self, n: u32) -> u32 {
            let _ = self.0.send(n);
            std::future::pending().await
        }
    }

    /// A server that leaves while the client's callbacks are at their limit (so that the client
    /// is not reading) is seen gone at once: the client's call in flight fails with
    /// `ConnectionClosed`, although no callback ever finishes. Before, the client noticed only when
    /// a callback finished (here never: the call waited for its deadline).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_leaves_while_callbacks_are_at_their_limit_is_seen_gone() {
        use rpc_core::frame::FrameReader;
        use rpc_transport::unix::EndpointExt;
        use tokio::io::AsyncWriteExt;

        let dir = common::private_dir();
        let endpoint = rpc_transport::Endpoint::new("leaving")
            .expect("name")
            .in_dir(dir.path());
        let listener =
            tokio::net::UnixListener::bind(dir.path().join("leaving.sock")).expect("bind raw");
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (all_started_tx, all_started) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (read, mut write) = stream.into_split();
            let mut reader = FrameReader::new(read);
            let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
            let welcome = Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            };
            write
                .write_all(&common::frame(&welcome, &[]))
                .await
                .expect("welcome");
            // The client's call is in flight: it lends one slot, so two callbacks start (the
            // limit is one) and the third waits, unread.
            let call = reader.read_frame(DEFAULT_MAX_FRAME).await;
            assert!(matches!(call, Ok(Some(_))), "the client's call: {call:?}");
            let args = postcard::to_stdvec(&(7u32,)).expect("encode");
            for id in 1..=3 {
                write
                    .write_all(&common::frame(&call_frame(id), &args))
                    .await
                    .expect("callback");
            }
            let _ = all_started.await;
            // Leaves, while both callbacks run.
        });
        let mut config = ClientConfig::new();
        config
            .serve_callbacks(EchoServer::new(Stuck(started_tx)))
            .max_callbacks_in_flight(1);
        let client: HubClient = within(
            "the connection",
            rpc_transport::connect_with(&endpoint, &config),
        )
        .await
        .expect("connect");
        let ping = tokio::spawn(async move { client.ping().await });
        for _ in 0..2 {
            within("a callback to start", started.recv())
                .await
                .expect("a callback");
        }
        let _ = all_started_tx.send(());
        server.await.expect("server");
        let result = within("the call to fail", ping).await.expect("join");
        assert!(
            matches!(result, Err(RpcError::ConnectionClosed)),
            "{result:?}"
        );
        assert!(
            started.try_recv().is_err(),
            "the third callback, sent before the server left, was not started"
        );
    }
}

/// A client that serves callbacks reads the replies to its calls whatever it has queued of its
/// own calls: its limit of unsent bytes (past which it stops reading) counts its replies to
/// the server's callbacks only. Before, its own calls counted: with more than 1 MiB of them
/// waiting for a server that was not reading, it stopped reading, and the reply to its first
/// call waited unread (and with a server doing the same, the connection hung for good).
#[tokio::test]
async fn a_client_reads_its_replies_whatever_calls_it_has_queued() {
    let (client, mut server) = connect().await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let call = within(
        "the first call",
        server.reader.read_frame(DEFAULT_MAX_FRAME),
    )
    .await
    .expect("read")
    .expect("a frame");
    let (header, _) = postcard::take_from_bytes::<Header>(&call).expect("header");
    let Header::Call { id, .. } = header else {
        panic!("expected a call, got {header:?}");
    };
    // 6 MiB of calls, made without yielding: the writer task has not run, and the server
    // reads none of them.
    let data = rpc_core::ByteBuf::from(vec![7u8; 32 * 1024]);
    let mut queued: Vec<_> = (0..200)
        .map(|_| Box::pin(client.store(data.clone())))
        .collect();
    for call in &mut queued {
        assert!(futures_util::FutureExt::now_or_never(call.as_mut()).is_none());
    }
    let reply = Header::Reply {
        id,
        status: ReplyStatus::Ok,
    };
    // A callback first: the client reads it, then looks at what it has queued before it
    // reads on.
    let args = postcard::to_stdvec(&(1u32,)).expect("encode");
    server
        .send(&[
            frame(&call_frame(1), &args),
            frame(&reply, &postcard::to_stdvec(&7u32).expect("encode")),
        ])
        .await;
    let answered = within("the first call's reply", first).await.expect("join");
    assert_eq!(answered.expect("the first call"), 7);
}
