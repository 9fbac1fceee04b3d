//! One-way calls to a peer that does not read: each waits for room once 1 MiB of calls waits
//! to be written, instead of queueing without end (a call waits for its reply; a one-way call
//! has none), and fails with `DeadlineExceeded` if its deadline passes meanwhile.

mod common;

use std::time::Duration;

use rpc_core::{ByteBuf, Client, ClientConfig, ClientHandle, RpcError};

/// A log that takes large lines, without answering.
#[rpc_core::service]
pub trait Log {
    /// Writes `line`.
    #[rpc(oneway)]
    async fn line(&self, line: ByteBuf);
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
    let mut config = ClientConfig::new();
    config.default_timeout(Some(Duration::from_secs(1)));
    let handle = ClientHandle::connect(
        client_reader,
        client_writer,
        <LogClient as Client>::SERVICE,
        &config,
    )
    .await
    .expect("connect");
    let log = LogClient::from_handle(handle);
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
