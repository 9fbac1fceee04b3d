//! A hostile server against a client that serves callbacks: calls to unknown methods and
//! arguments that do not decode get typed failures and the client goes on; a frame that does
//! not decode or is too large closes the connection with a typed error; nothing crashes or
//! hangs the client. The server's calls have ids of its own; a reply to a call of one side that
//! it never made closes the connection, on the client as on the server.

mod callback_peer;
mod common;

use bytes::Bytes;
use callback_peer::{call, connect, echo, frame, Hub, HubClient, HubServer};
use common::within;
use rpc_core::frame::{FrameError, FrameRead, FrameWrite};
use rpc_core::protocol::{GoodbyeReason, Header, ReplyStatus, WireError, DEFAULT_MAX_FRAME};
use rpc_core::{Client as _, ConnectionError, ProtocolError, RpcError};

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
    let ((mut reader, mut writer), serving) = common::serve_in_memory(HubServer::new(Pong));
    let hello = common::hello(<HubClient as rpc_core::Client>::SERVICE);
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
