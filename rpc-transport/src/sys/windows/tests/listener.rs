//! The listener's instances waiting for clients.

use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;

use super::{unique_endpoint, CLIENT_ACCESS};
use crate::sys::windows::{pipe, Listener};
use rpc_core::ServerConfig;

/// Clients that come at once each find an instance waiting, four of them, before the server has
/// accepted any; a fifth is told that every instance is busy. Before, only the first found
/// one: a program that opened the pipe in a loop took each free instance in turn, and kept
/// other clients told that all were busy.
#[tokio::test]
async fn four_instances_wait_for_clients() {
    let endpoint = unique_endpoint("waiting");
    let listener = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
    let path = listener.address();
    let opened: Vec<_> = (0..4)
        .map(|i| pipe::open(&path, CLIENT_ACCESS).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let fifth = pipe::open(&path, CLIENT_ACCESS);
    assert_eq!(
        fifth.err().and_then(|e| e.raw_os_error()),
        Some(ERROR_PIPE_BUSY as i32)
    );
    drop(opened);
}
