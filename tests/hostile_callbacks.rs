//! A hostile server against a client that serves callbacks: calls to unknown methods and
//! arguments that do not decode get typed failures and the client goes on; a frame that does
//! not decode or is too large closes the connection with a typed error; nothing crashes or
//! hangs the client. The server's calls have ids of its own; a reply to a call of one side that
//! it never made closes the connection, on the client as on the server.

mod common;

use bytes::Bytes;
use common::within;
use rpc_core::frame::{FrameError, FrameRead, FrameWrite};
use rpc_core::memory::{MemoryReader, MemoryWriter};
use rpc_core::protocol::{
    GoodbyeReason, Header, ReplyStatus, WireError, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION,
};
use rpc_core::{Client as _, ClientConfig, ConnectionError, ProtocolError, RpcError, ServerConfig};

/// What the client serves back.
#[rpc_core::service]
pub trait Echo {
    /// Answers `n`.
    async fn echo(&self, n: u32) -> u32;
}

/// The service the client calls.
#[rpc_core::service(callbacks = Echo)]
pub trait Hub {
    /// Never answered by the hostile server.
    async fn ping(&self) -> u32;
    /// Takes its argument's size.
    async fn store(&self, data: rpc_core::ByteBuf) -> u32;
}

struct Echoes;

impl Echo for Echoes {
    async fn echo(&self, n: u32) -> u32 {
        n
    }
}

/// A whole frame, as the memory transport takes it.
fn frame(header: &Header, body: &[u8]) -> Bytes {
    Bytes::from(common::frame(header, body))
}

/// A server that welcomes the client, then does what the test says.
struct Hostile {
    reader: MemoryReader,
    writer: MemoryWriter,
}

impl Hostile {
    async fn send(&mut self, frames: &[Bytes]) {
        self.writer.write_frames(frames).await.expect("send");
    }

    /// The next frame from the client that is not a call of its own.
    async fn reply(&mut self) -> (Header, Bytes) {
        loop {
            let frame = within(
                "a frame from the client",
                self.reader.read_frame(DEFAULT_MAX_FRAME),
            )
            .await
            .expect("read")
            .expect("a frame");
            let (header, body) = postcard::take_from_bytes::<Header>(&frame).expect("header");
            if !matches!(header, Header::Call { .. }) {
                return (header, Bytes::copy_from_slice(body));
            }
        }
    }
}

async fn connect() -> (HubClient, Hostile) {
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let mut config = ClientConfig::new();
    config
        .serve_callbacks(EchoServer::new(Echoes))
        .max_frame(4096);
    let server = tokio::spawn(async move {
        let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
        let welcome = Header::Welcome {
            version: PROTOCOL_VERSION,
            max_frame: DEFAULT_MAX_FRAME,
        };
        writer
            .write_frames(&[frame(&welcome, &[])])
            .await
            .expect("welcome");
        Hostile { reader, writer }
    });
    let client = rpc_core::connect(client_reader, client_writer, &config)
        .await
        .expect("connect");
    (client, server.await.expect("join"))
}

/// The id of `Echo::echo`.
fn echo() -> u32 {
    <EchoClient as rpc_core::Client>::SERVICE
        .method_named("echo")
        .map(|m| m.id)
        .expect("echo")
}

fn call(id: u64, method: u32) -> Header {
    Header::Call {
        id,
        method,
        deadline_us: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_from_the_server_get_typed_failures() {
    let (client, mut server) = connect().await;
    server.send(&[frame(&call(1, 99), &[])]).await;
    assert_eq!(
        server.reply().await.0,
        Header::Reply {
            id: 1,
            status: ReplyStatus::Failed(WireError::UnknownMethod(99))
        }
    );
    server.send(&[frame(&call(2, echo()), &[0xff; 8])]).await;
    let (header, _) = server.reply().await;
    assert!(
        matches!(
            header,
            Header::Reply {
                id: 2,
                status: ReplyStatus::Failed(WireError::BadArguments(_))
            }
        ),
        "{header:?}"
    );
    // A one-way call of a method that answers is ignored; a good call is answered.
    server
        .send(&[frame(&Header::Notify { method: echo() }, &[5])])
        .await;
    server
        .send(&[frame(
            &call(3, echo()),
            &postcard::to_stdvec(&7u32).expect("encode"),
        )])
        .await;
    let (header, body) = server.reply().await;
    assert_eq!(
        header,
        Header::Reply {
            id: 3,
            status: ReplyStatus::Ok
        }
    );
    assert_eq!(postcard::from_bytes::<u32>(&body).expect("a number"), 7);
    assert!(!client.handle().is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_server_fails_the_client_with_a_typed_error() {
    let (client, mut server) = connect().await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    server
        .send(&[Bytes::from_static(&[3, 0, 0, 0, 0xff, 0xff, 0xff])])
        .await;
    let failed = within("the call to fail", waiting).await.expect("join");
    assert!(
        matches!(failed, Err(RpcError::Protocol(ProtocolError::BadHeader))),
        "{failed:?}"
    );
    assert!(client.handle().is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_from_the_server_fails_the_client_with_a_typed_error() {
    let (client, mut server) = connect().await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    // A call claiming more than the client's 4096-byte frames.
    let mut oversized = 5000u32.to_le_bytes().to_vec();
    oversized.extend(postcard::to_stdvec(&call(1, echo())).expect("encode"));
    server.send(&[Bytes::from(oversized)]).await;
    let failed = within("the call to fail", waiting).await.expect("join");
    assert!(
        matches!(
            failed,
            Err(RpcError::Frame(FrameError::TooLarge {
                len: 5000,
                max: 4096
            }))
        ),
        "{failed:?}"
    );
}

/// A server that calls back as fast as it can and never takes the replies: past the client's
/// bound on unsent replies (1 MiB, as a server's `max_unsent_bytes`), the client stops reading
/// the server's frames, so that the server's writes wait instead of the client queueing
/// replies without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_takes_no_replies_gets_backpressure() {
    let (_client, mut hostile) = connect().await;
    let echo = echo();
    let args = postcard::to_stdvec(&(1u32,)).expect("encode");
    // Batches of calls, written until a write waits: the client has stopped reading. Each
    // reply is at least 7 bytes: far fewer calls than this fill a MiB of them.
    const BATCH: u64 = 1000;
    const MOST: u64 = 600_000;
    let mut sent = 0;
    loop {
        assert!(
            sent < MOST,
            "{sent} calls sent and the client never pushed back"
        );
        let batch: Vec<Bytes> = (sent..sent + BATCH)
            .map(|id| frame(&call(id + 1, echo), &args))
            .collect();
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            hostile.writer.write_frames(&batch),
        )
        .await
        {
            Ok(result) => result.expect("send"),
            Err(_) => break,
        }
        sent += BATCH;
    }
}

/// The server's calls carry the server's ids, whatever ids the client has used: one the client
/// never used is answered. A reply for it is another thing: no call of the client has that id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_call_ids_are_its_own() {
    let (client, mut server) = connect().await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let args = postcard::to_stdvec(&(7u32,)).expect("encode");
    server.send(&[frame(&call(1000, echo()), &args)]).await;
    let (header, body) = server.reply().await;
    assert_eq!(
        header,
        Header::Reply {
            id: 1000,
            status: ReplyStatus::Ok
        }
    );
    assert_eq!(postcard::from_bytes::<u32>(&body).expect("a number"), 7);
    assert!(!client.handle().is_closed());

    let status = ReplyStatus::Ok;
    server
        .send(&[frame(&Header::Reply { id: 1000, status }, &[0])])
        .await;
    let failed = within("the call to fail", waiting).await.expect("join");
    assert!(
        matches!(
            failed,
            Err(RpcError::Protocol(ProtocolError::UnknownReply { id: 1000 }))
        ),
        "{failed:?}"
    );
    assert!(client.handle().is_closed());
}

/// Credit and a stop with ids of the server's own (for a stream of a call it made to the
/// client) are not taken for frames about the client's streams: a client that serves
/// callbacks cannot tell them from its own ids, and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_and_stops_with_the_servers_ids_leave_the_connection_open() {
    let (client, mut server) = connect().await;
    server
        .send(&[
            frame(
                &Header::Credit {
                    stream: 1000,
                    bytes: 10,
                },
                &[],
            ),
            frame(&Header::StreamStop { stream: 1001 }, &[]),
        ])
        .await;
    // A callback after them is answered: the connection is open.
    let args = postcard::to_stdvec(&(9u32,)).expect("encode");
    server.send(&[frame(&call(1002, echo()), &args)]).await;
    let (header, body) = server.reply().await;
    assert_eq!(
        header,
        Header::Reply {
            id: 1002,
            status: ReplyStatus::Ok
        }
    );
    assert_eq!(postcard::from_bytes::<u32>(&body).expect("a number"), 9);
    assert!(!client.handle().is_closed());
}

struct Pong;

impl Hub for Pong {
    async fn ping(&self) -> u32 {
        1
    }

    async fn store(&self, data: rpc_core::ByteBuf) -> u32 {
        data.len() as u32
    }
}

/// A client that answers a callback the server never made: the server closes its connection
/// with a typed error, and tells it why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_answering_a_callback_never_made_loses_its_connection() {
    let ((mut reader, mut writer), server) = rpc_core::memory::pair();
    let serving = tokio::spawn(async move {
        let config = ServerConfig::default();
        let shutdown = rpc_core::CancellationToken::new();
        let peer = rpc_core::PeerInfo::unknown();
        rpc_core::serve_connection(
            server.0,
            server.1,
            peer,
            HubServer::new(Pong),
            &config,
            &shutdown,
        )
        .await
    });
    let service = <HubClient as rpc_core::Client>::SERVICE;
    let hello = Header::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        service: service.name.to_owned(),
        fingerprint: service.fingerprint(),
        max_frame: DEFAULT_MAX_FRAME,
        callbacks: service.callbacks.map_or(0, |c| c.fingerprint()),
    };
    writer
        .write_frames(&[frame(&hello, &[])])
        .await
        .expect("hello");
    let read = |frame: Option<Bytes>| {
        let frame = frame.expect("a frame");
        postcard::take_from_bytes::<Header>(&frame)
            .expect("header")
            .0
    };
    let welcome = within("the welcome", reader.read_frame(DEFAULT_MAX_FRAME)).await;
    assert!(matches!(
        read(welcome.expect("read")),
        Header::Welcome { .. }
    ));

    let status = ReplyStatus::Ok;
    writer
        .write_frames(&[frame(&Header::Reply { id: 1, status }, &[7])])
        .await
        .expect("reply");
    let goodbye = within("the goodbye", reader.read_frame(DEFAULT_MAX_FRAME)).await;
    assert_eq!(
        read(goodbye.expect("read")),
        Header::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        }
    );
    let ended = within("the connection to end", serving)
        .await
        .expect("join");
    assert!(
        matches!(
            ended,
            Err(ConnectionError::Protocol(ProtocolError::UnknownReply {
                id: 1
            }))
        ),
        "{ended:?}"
    );
}

/// A callback that tells it has started, then never finishes.
#[cfg(unix)]
struct Stuck(tokio::sync::mpsc::UnboundedSender<u32>);

#[cfg(unix)]
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
#[cfg(unix)]
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

/// A call to `Echo::echo` with request id `id`.
fn call_frame(id: u64) -> Header {
    call(id, echo())
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
