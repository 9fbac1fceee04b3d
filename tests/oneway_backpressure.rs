//! Calls and one-way calls to a peer that does not read: each waits for room once 1 MiB of
//! calls waits to be written, instead of queueing without end, and fails with
//! `DeadlineExceeded` if its deadline passes meanwhile; also calls that open a stream and
//! queue behind the items of another.

mod common;

use std::time::Duration;

use rpc_core::{ByteBuf, Client, ClientConfig, ClientHandle, RpcError};

/// A log that takes large lines, without answering.
#[rpc_core::service]
pub trait Log {
    /// Writes `line`.
    #[rpc(oneway)]
    async fn line(&self, line: ByteBuf);
    /// Stores `data`; its length.
    async fn store(&self, data: ByteBuf) -> u64;
    /// Stores the chunks; their length.
    async fn upload(&self, chunks: rpc_core::Stream<ByteBuf>) -> u64;
    /// The lines that follow `after`.
    async fn tail(&self, after: ByteBuf) -> rpc_core::Stream<ByteBuf>;
}

/// A client over one end of an in-memory pair, whose calls have `timeout`.
async fn connect(
    reader: impl rpc_core::frame::FrameRead,
    writer: impl rpc_core::frame::FrameWrite,
    timeout: Duration,
) -> LogClient {
    let mut config = ClientConfig::new();
    config.default_timeout(Some(timeout));
    let handle = ClientHandle::connect(reader, writer, <LogClient as Client>::SERVICE, &config)
        .await
        .expect("connect");
    LogClient::from_handle(handle)
}

/// A client of a server that welcomes it and then never reads: sends 64 KiB lines until one
/// waits. Before, every one returned at once: 4,096 of them queued 256 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_to_a_peer_that_does_not_read_wait_for_room() {
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(async move {
        common::welcome_client(&mut reader, &mut writer).await;
        // Holds both ends and reads nothing more.
        std::future::pending::<()>().await;
        drop((reader, writer));
    });
    let log = connect(client_reader, client_writer, Duration::from_secs(1)).await;
    const MOST: usize = 4_096;
    let line = ByteBuf::from(vec![7u8; 64 * 1024]);
    let mut sent = 0;
    let outcome = loop {
        assert!(sent < MOST, "{sent} one-way calls queued, none waited");
        match log.line(line.clone()).await {
            Ok(()) => sent += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(outcome, RpcError::DeadlineExceeded), "{outcome:?}");
    // 1 MiB queued (16 lines, and the one that goes past it), and the 64 frames the in-memory
    // transport holds; not more.
    assert!(sent <= 16 + 1 + 64, "{sent} sent before one waited");
    server.abort();
}

/// Calls to a peer that does not read, many at once, each of 64 KiB and waiting for its reply
/// until its deadline: past 1 MiB queued the others wait for room and are never queued. What
/// the peer finally reads, once it reads again, is counted. Before, all 1,024 were queued
/// (64 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_peer_that_does_not_read_wait_for_room_too() {
    use rpc_core::frame::FrameRead;
    use rpc_core::protocol::Header;

    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let (read_now, read) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        common::welcome_client(&mut reader, &mut writer).await;
        // Reads nothing until told, then counts the calls that come until the client leaves.
        let _ = read.await;
        let mut calls = 0;
        while let Ok(Some(frame)) = reader.read_frame(1 << 20).await {
            if matches!(
                postcard::take_from_bytes::<Header>(&frame),
                Ok((Header::Call { .. }, _))
            ) {
                calls += 1;
            }
        }
        drop(writer);
        calls
    });
    let log = connect(client_reader, client_writer, Duration::from_millis(500)).await;
    const CALLS: usize = 1_024;
    let data = ByteBuf::from(vec![7u8; 64 * 1024]);
    let calls = (0..CALLS).map(|_| log.store(data.clone()));
    let outcomes = common::within("the calls", futures_util::future::join_all(calls)).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(RpcError::DeadlineExceeded))),
        "{:?}",
        outcomes
            .iter()
            .find(|o| !matches!(o, Err(RpcError::DeadlineExceeded)))
    );
    let _ = read_now.send(());
    drop(log);
    let queued = common::within("the peer to read all", server)
        .await
        .expect("joined");
    // 1 MiB queued (16 calls, and the one that goes past it), and the 64 frames the in-memory
    // transport holds; not more.
    assert!(queued <= 16 + 1 + 64, "{queued} calls queued of {CALLS}");
}

/// Calls that open a stream, made while the items of an upload wait to be written to a peer
/// that does not read: they queue behind those items (a cancel among them must reach the peer
/// first) and count against the same 1 MiB as other calls. Before, they were counted as stream
/// items, which have no such limit: all 1,024 calls of 64 KiB were queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_opening_streams_behind_items_wait_for_room_too() {
    use rpc_core::frame::{FrameRead, FrameReader, FrameWrite, FrameWriter};
    use rpc_core::protocol::Header;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const ITEM: usize = 16 * 1024;
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let (client_read, client_write) = tokio::io::split(client_end);
    let (read_now, read) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut reader, mut writer) = (
            FrameReader::new(server_read),
            FrameWriter::new(server_write),
        );
        common::welcome_client(&mut reader, &mut writer).await;
        // Grants the upload a large window, then reads nothing until told; then counts the
        // calls that come until the client leaves.
        let upload = loop {
            let frame = reader
                .read_frame(1 << 20)
                .await
                .expect("read")
                .expect("a call");
            if let Ok((Header::Call { id, .. }, _)) = postcard::take_from_bytes::<Header>(&frame) {
                break id;
            }
        };
        let credit = Header::Credit {
            stream: upload,
            bytes: 64 << 20,
        };
        writer
            .write_frames(&[bytes::Bytes::from(common::frame(&credit, &[]))])
            .await
            .expect("credit");
        let _ = read.await;
        let mut calls = 0;
        while let Ok(Some(frame)) = reader.read_frame(1 << 20).await {
            if matches!(
                postcard::take_from_bytes::<Header>(&frame),
                Ok((Header::Call { .. }, _))
            ) {
                calls += 1;
            }
        }
        drop(writer);
        calls
    });
    let log = connect(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
        Duration::from_millis(500),
    )
    .await;
    // An endless upload, whose items the test counts as the stream takes them.
    let taken = Arc::new(AtomicUsize::new(0));
    let took = Arc::new(tokio::sync::Notify::new());
    let items = {
        let (taken, took) = (Arc::clone(&taken), Arc::clone(&took));
        futures_util::stream::repeat_with(move || {
            taken.fetch_add(1, Ordering::SeqCst);
            took.notify_one();
            ByteBuf::from(vec![1u8; ITEM])
        })
    };
    let uploader = log.clone();
    let upload = tokio::spawn(async move { uploader.upload(rpc_core::Stream::new(items)).await });
    // 256 KiB taken: more than the peer's buffer (64 KiB) and one write of stream frames
    // (64 KiB) hold, so that stream frames wait in the lane behind which the calls queue.
    common::until_notified("the upload to fill the transport", &took, || {
        taken.load(Ordering::SeqCst) >= 256 * 1024 / ITEM
    })
    .await;
    const CALLS: usize = 1_024;
    let line = ByteBuf::from(vec![7u8; 64 * 1024]);
    let calls = (0..CALLS).map(|_| log.tail(line.clone()));
    let outcomes = common::within("the calls", futures_util::future::join_all(calls)).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(RpcError::DeadlineExceeded))),
        "{:?}",
        outcomes
            .iter()
            .find(|o| !matches!(o, Err(RpcError::DeadlineExceeded)))
            .map(|o| o.as_ref().err())
    );
    let _ = read_now.send(());
    upload.abort();
    drop(log);
    let queued = common::within("the peer to read all", server)
        .await
        .expect("joined");
    // 1 MiB of calls (16, and the one that goes past it), and the one the peer's buffer holds
    // (the upload's call was read before the count began); not more.
    assert!(queued <= 16 + 1 + 1, "{queued} calls queued of {CALLS}");
}
