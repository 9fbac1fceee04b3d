//! Servers that break the rules of streams: the client's connection closes with a typed error,
//! which the stream's receiver reports. Clients that break them are in `hostile_streams.rs`.

mod common;

use bytes::Bytes;
use common::{frame, stream_item, within};
use futures_util::StreamExt;
use std::time::Duration;

use rpc_core::frame::{FrameError, FrameRead, FrameWrite};
use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME};
use rpc_core::{Client, ClientConfig, ProtocolError, RpcError};

/// A server that sends more items than the client granted: the client's connection closes
/// with a typed error, which the stream's receiver reports. Over a transport of messages, each
/// item is read on its own; over a byte stream, the items arrive in one read and are taken
/// together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_beyond_its_credit_is_a_typed_error() {
    let ((reader, writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(send_beyond_credit(reader, writer));
    client_sees_credit_exceeded(client_reader, client_writer).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_beyond_its_credit_in_one_write_is_a_typed_error() {
    use rpc_core::frame::{FrameReader, FrameWriter};
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let (client_read, client_write) = tokio::io::split(client_end);
    let server = tokio::spawn(send_beyond_credit(
        FrameReader::new(server_read),
        FrameWriter::new(server_write),
    ));
    client_sees_credit_exceeded(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
    )
    .await;
    server.abort();
}

/// Answers the handshake and a stream's opening call, then sends five items with one write to
/// a client whose window is 2 bytes.
async fn send_beyond_credit<R: FrameRead, W: FrameWrite>(reader: R, writer: W) {
    fn five_items(id: u64) -> Vec<Vec<u8>> {
        (0..5u32).map(|n| stream_item(id, n)).collect()
    }
    answer_then_send(reader, writer, five_items).await;
}

/// Opens a stream of five items with a window of 2 bytes; it must end with `CreditExceeded`.
async fn client_sees_credit_exceeded<R: FrameRead, W: FrameWrite>(
    client_reader: R,
    client_writer: W,
) {
    let client: common::ProbeClient = rpc_core::connect(
        client_reader,
        client_writer,
        ClientConfig::new().stream_window(2),
    )
    .await
    .expect("connect");
    // The violation may close the connection before the opening call has finished sending
    // (its credit): then opening fails with it, else the stream ends with it.
    let mut end = None;
    match client.ticks(5).await {
        Ok(mut ticks) => {
            // No item is taken until the connection closes: taking one would grant credit for
            // the next, which the server may then send.
            let connection = client.handle().connection().expect("a connection");
            within("the connection to close", connection.closed()).await;
            while let Some(item) = within("the stream to end", ticks.next()).await {
                if let Err(error) = item {
                    end = Some(error);
                }
            }
        }
        Err(error) => end = Some(error),
    }
    assert!(
        matches!(
            end,
            Some(RpcError::Protocol(ProtocolError::CreditExceeded { .. }))
        ),
        "{end:?}"
    );
}

/// Answers the handshake and a stream's opening call, then sends the frames `after` makes for
/// the stream's id in one write, and keeps the connection open.
async fn answer_then_send<R: FrameRead, W: FrameWrite>(
    mut reader: R,
    mut writer: W,
    after: fn(u64) -> Vec<Vec<u8>>,
) {
    common::welcome_client(&mut reader, &mut writer).await;
    let call = reader
        .read_frame(DEFAULT_MAX_FRAME)
        .await
        .expect("call")
        .expect("a frame");
    let (Header::Call { id, .. }, _) = postcard::take_from_bytes::<Header>(&call).expect("header")
    else {
        panic!("expected a call");
    };
    let reply = Header::Reply {
        id,
        status: ReplyStatus::Ok,
    };
    let mut frames = vec![Bytes::from(frame(&reply, &[]))];
    frames.extend(after(id).into_iter().map(Bytes::from));
    writer.write_frames(&frames).await.expect("frames");
    while let Ok(Some(_)) = reader.read_frame(DEFAULT_MAX_FRAME).await {}
}

/// Opens `ticks` over a pipe to a raw server that answers with the frames `after` makes;
/// returns the items and how the stream (or its opening) ended.
async fn ticks_from_raw_server(
    after: fn(u64) -> Vec<Vec<u8>>,
    config: &ClientConfig,
) -> (Vec<u32>, Option<RpcError>) {
    use rpc_core::frame::{FrameReader, FrameWriter};
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let (client_read, client_write) = tokio::io::split(client_end);
    let server = tokio::spawn(answer_then_send(
        FrameReader::new(server_read),
        FrameWriter::new(server_write),
        after,
    ));
    let client: common::ProbeClient = rpc_core::connect(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
        config,
    )
    .await
    .expect("connect");
    let mut items = Vec::new();
    let mut end = None;
    match client.ticks(5).await {
        Ok(mut ticks) => {
            while let Some(item) = within("the stream to end", ticks.next()).await {
                match item {
                    Ok(item) => items.push(item),
                    Err(error) => end = Some(error),
                }
            }
        }
        Err(error) => end = Some(error),
    }
    server.abort();
    (items, end)
}

/// 300,000 as a postcard varint (3 bytes) in parts of one byte, then the stream's end.
fn three_parts(id: u64) -> Vec<Vec<u8>> {
    let encoded = postcard::to_stdvec(&300_000u32).expect("encode");
    vec![
        frame(&Header::StreamPart { stream: id }, &encoded[..1]),
        frame(&Header::StreamPart { stream: id }, &encoded[1..2]),
        frame(&Header::StreamItem { stream: id }, &encoded[2..]),
        stream_item(id, 7),
        frame(
            &Header::StreamEnd {
                stream: id,
                error: None,
            },
            &[],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_puts_items_in_parts_back_together() {
    let (items, end) = ticks_from_raw_server(three_parts, &ClientConfig::new()).await;
    assert_eq!(items, [300_000, 7]);
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ending_a_stream_inside_an_item_is_a_typed_error() {
    fn end_inside(id: u64) -> Vec<Vec<u8>> {
        let mut frames = three_parts(id);
        frames.drain(2..4);
        frames
    }
    let (items, end) = ticks_from_raw_server(end_inside, &ClientConfig::new()).await;
    assert!(items.is_empty());
    assert!(
        matches!(
            end,
            Some(RpcError::Protocol(ProtocolError::EndInsideItem { .. }))
        ),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_an_item_in_parts_past_the_maximum_frame_is_a_typed_error() {
    fn too_long(id: u64) -> Vec<Vec<u8>> {
        (0..4)
            .map(|_| frame(&Header::StreamPart { stream: id }, &[0; 64 * 1024]))
            .collect()
    }
    let (items, end) =
        ticks_from_raw_server(too_long, ClientConfig::new().max_frame(200 * 1024)).await;
    assert!(items.is_empty());
    assert!(
        matches!(
            end,
            Some(RpcError::Protocol(ProtocolError::ItemTooLarge {
                max: 204_800,
                ..
            }))
        ),
        "{end:?}"
    );
}

/// A server that starts a frame and never finishes it: the client's frame timeout closes the
/// connection, and a stream with no deadline ends with the typed error instead of waiting for
/// ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stalling_inside_a_frame_ends_the_stream_at_the_frame_timeout() {
    fn half_an_item(id: u64) -> Vec<Vec<u8>> {
        let mut item = stream_item(id, 7);
        item.truncate(item.len() - 1);
        vec![item]
    }
    let timeout = Duration::from_millis(200);
    let mut config = ClientConfig::new();
    config.frame_timeout(timeout).default_timeout(None);
    let (items, end) = ticks_from_raw_server(half_an_item, &config).await;
    assert!(items.is_empty(), "{items:?}");
    assert!(
        matches!(end, Some(RpcError::Frame(FrameError::Stalled(t))) if t == timeout),
        "{end:?}"
    );
}
