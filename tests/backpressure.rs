//! A client that sends calls as fast as it can and never reads a reply gets backpressure: the
//! server stops reading from it, and what it costs the server stays within the documented
//! bound. Alone in its test binary, so that the process's resident memory is the server's.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{RawPeer, TestServer};

/// Resident memory of this process, from `/proc`.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_backpressure() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let before = resident_kib();

    // Batches of calls, written until a write waits: the server has stopped reading.
    const BATCH: u64 = 1000;
    const MOST: u64 = 3_000_000;
    let mut batch = Vec::new();
    let mut sent = 0;
    let pushed_back = loop {
        assert!(
            sent < MOST,
            "{sent} calls sent and the server never pushed back"
        );
        batch.clear();
        for id in sent..sent + BATCH {
            batch.extend(RawPeer::call_frame(id + 1, "add", &(1i64, 2i64)));
        }
        match tokio::time::timeout(Duration::from_secs(2), peer.send_raw(&batch)).await {
            Ok(result) => result.expect("write"),
            Err(_) => break sent,
        }
        sent += BATCH;
    };
    let grown_kib = resident_kib().saturating_sub(before);
    println!("pushed back after {pushed_back} calls; resident memory grew {grown_kib} KiB");
    // One MiB of unsent replies, the socket buffers, and the allocator's slack.
    assert!(grown_kib < 32 * 1024, "the server grew {grown_kib} KiB");

    drop(peer);
    server.assert_serving().await;
}
