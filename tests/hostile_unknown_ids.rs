//! Servers that answer calls the client never made, or send stream frames for them: the
//! client's connection closes with a typed error, which its calls in flight report. Frames for
//! calls the client made and gave up are ignored: they crossed its cancel.

mod common;

use bytes::Bytes;
use common::{frame, stream_item, within, ProbeClient};
use futures_util::StreamExt;
use rpc_core::frame::{FrameRead, FrameWrite};
use rpc_core::memory::{MemoryReader, MemoryWriter};
use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME};
use rpc_core::{Client as _, ClientConfig, ProtocolError, RpcError};

/// A server that welcomes the client, then does what the test says.
struct RawServer {
    reader: MemoryReader,
    writer: MemoryWriter,
}

impl RawServer {
    async fn send(&mut self, frames: Vec<Vec<u8>>) {
        let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
        self.writer.write_frames(&frames).await.expect("send");
    }

    /// The next frame's header from the client.
    async fn next(&mut self) -> Header {
        let frame = within(
            "a frame from the client",
            self.reader.read_frame(DEFAULT_MAX_FRAME),
        )
        .await
        .expect("read")
        .expect("a frame");
        let (header, _) = postcard::take_from_bytes::<Header>(&frame).expect("header");
        header
    }

    /// The id of the client's next call, past the credit it grants its streams.
    async fn call_id(&mut self) -> u64 {
        loop {
            match self.next().await {
                Header::Call { id, .. } => return id,
                Header::Credit { .. } => {}
                other => panic!("expected a call, got {other:?}"),
            }
        }
    }
}

async fn connect() -> (ProbeClient, RawServer) {
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(async move {
        common::welcome_client(&mut reader, &mut writer).await;
        RawServer { reader, writer }
    });
    let client = rpc_core::connect(client_reader, client_writer, &ClientConfig::new())
        .await
        .expect("connect");
    (client, within("the handshake", server).await.expect("join"))
}

fn reply_ok(id: u64, value: i64) -> Vec<u8> {
    let status = ReplyStatus::Ok;
    frame(
        &Header::Reply { id, status },
        &postcard::to_stdvec(&value).expect("encode"),
    )
}

/// Waits for the client's connection to close; returns the error later calls fail with.
async fn closed_with(client: &ProbeClient) -> RpcError {
    let connection = client.handle().connection().expect("a connection");
    within("the connection to close", connection.closed()).await;
    match client.add(1, 2).await {
        Ok(sum) => panic!("a call on a closed connection answered {sum}"),
        Err(error) => error,
    }
}

/// A reply for the id the client would use next: no call of the client has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_call_never_made_closes_the_connection() {
    let (client, mut server) = connect().await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.add(1, 2).await }
    });
    let id = server.call_id().await;
    server.send(vec![reply_ok(id + 1, 3)]).await;
    let failed = within("the call to fail", waiting).await.expect("join");
    let unknown = id + 1;
    assert!(
        matches!(&failed, Err(RpcError::Protocol(ProtocolError::UnknownReply { id })) if *id == unknown),
        "{failed:?}"
    );
    let later = closed_with(&client).await;
    assert!(
        matches!(
            later,
            RpcError::Protocol(ProtocolError::UnknownReply { .. })
        ),
        "{later:?}"
    );
}

/// A frame of stream `stream` of `kind`: an item, a part of one, credit, a stop, or the end.
fn stream_frame(kind: &str, stream: u64) -> Vec<u8> {
    match kind {
        "item" => stream_item(stream, 1),
        "part" => frame(&Header::StreamPart { stream }, &[0x80]),
        "credit" => frame(&Header::Credit { stream, bytes: 10 }, &[]),
        "stop" => frame(&Header::StreamStop { stream }, &[]),
        _ => {
            let end = Header::StreamEnd {
                stream,
                error: None,
            };
            frame(&end, &[])
        }
    }
}

/// An item, a part of one, the end, credit or a stop of a stream whose id the client has not
/// used yet: the open stream and the call in flight fail with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_frames_for_a_call_never_made_close_the_connection() {
    for kind in ["item", "part", "end", "credit", "stop"] {
        let (client, mut server) = connect().await;
        let opening = tokio::spawn({
            let client = client.clone();
            async move { client.ticks(5).await }
        });
        let stream_id = server.call_id().await;
        server.send(vec![reply_ok(stream_id, 0)]).await;
        let mut ticks = within("the stream to open", opening)
            .await
            .expect("join")
            .expect("open");
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.add(1, 2).await }
        });
        let call_id = server.call_id().await;
        let unknown = call_id + 1;
        server.send(vec![stream_frame(kind, unknown)]).await;

        let failed = within("the call to fail", waiting).await.expect("join");
        assert!(
            matches!(&failed, Err(RpcError::Protocol(ProtocolError::UnknownStream { stream })) if *stream == unknown),
            "{kind}: {failed:?}"
        );
        let end = within("the stream to fail", ticks.next()).await;
        assert!(
            matches!(&end, Some(Err(RpcError::Protocol(ProtocolError::UnknownStream { stream }))) if *stream == unknown),
            "{kind}: {end:?}"
        );
        assert!(within("the stream to end", ticks.next()).await.is_none());
        let later = closed_with(&client).await;
        assert!(
            matches!(
                later,
                RpcError::Protocol(ProtocolError::UnknownStream { .. })
            ),
            "{kind}: {later:?}"
        );
    }
}

/// A call the client gave up (its future dropped once the server had it): its reply, and
/// stream frames for its id, cross the cancel and are ignored; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_for_a_cancelled_call_are_ignored() {
    let (client, mut server) = connect().await;
    let id = tokio::select! {
        answer = client.add(1, 2) => panic!("answered without a reply: {answer:?}"),
        id = server.call_id() => id,
    };
    assert_eq!(server.next().await, Header::Cancel { id });
    server
        .send(vec![
            reply_ok(id, 3),
            stream_frame("part", id),
            stream_frame("item", id),
            stream_frame("end", id),
            stream_frame("credit", id),
            stream_frame("stop", id),
        ])
        .await;

    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.add(2, 3).await }
    });
    let next = server.call_id().await;
    assert!(next > id);
    server.send(vec![reply_ok(next, 5)]).await;
    let answered = within("the next call's reply", waiting)
        .await
        .expect("join");
    assert!(matches!(answered, Ok(5)), "{answered:?}");
    assert!(!client.handle().is_closed());
}
