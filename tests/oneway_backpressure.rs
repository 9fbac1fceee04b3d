//! Calls and one-way calls to a peer that does not read: each waits for room once 1 MiB of
//! calls waits to be written, instead of queueing without end, and fails with
//! `DeadlineExceeded` if its deadline passes meanwhile.

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
}

/// A client over one end of an in-memory pair, whose calls have `timeout`.
async fn connect(
    reader: rpc_core::memory::MemoryReader,
    writer: rpc_core::memory::MemoryWriter,
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
