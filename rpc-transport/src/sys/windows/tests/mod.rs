//! Tests of the Windows pipes against live pipes (under Wine on Linux).

mod frames;
mod listener;
mod security;

use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead};
use rpc_core::{ClientConfig, ServerConfig};

use super::frames::{PipeReader, PipeWriter};
use super::pipe::{Pipe, WriteHalf};
use super::security::CLIENT_ACCESS;
use super::{connect, pipe, Listener};
use crate::endpoint::Endpoint;

/// Whether this runs under Wine, which does not enforce every pipe security setting.
fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    // SAFETY: looking up an export by name; nothing is called.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

fn unique_endpoint(tag: &str) -> Endpoint {
    Endpoint::new(&format!("unit-{tag}-{}", std::process::id())).expect("name")
}

/// A server end and a client end of one pipe instance, as the transport sets them up.
async fn connected_pair(
    tag: &str,
) -> ((PipeReader, PipeWriter), (PipeReader, PipeWriter), Listener) {
    let endpoint = unique_endpoint(tag);
    let mut listener = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
    let config = ClientConfig::default();
    let (accepted, connected) = tokio::join!(listener.accept(), connect(&endpoint, &config));
    let (server_reader, server_writer, _) = accepted.expect("accept");
    let client = connected.map_err(|e| e.to_string()).expect("connect");
    ((server_reader, server_writer), client, listener)
}

/// A server end as the transport sets it up, and a raw client end that writes whatever
/// messages a test gives it.
async fn raw_client(tag: &str) -> (PipeReader, WriteHalf, Listener) {
    let endpoint = unique_endpoint(tag);
    let mut listener = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
    let client = pipe::open(&listener.address(), CLIENT_ACCESS).expect("open");
    let (server_reader, _server_writer, _) = listener.accept().await.expect("accept");
    (
        server_reader,
        WriteHalf(Arc::new(Pipe::Client(client))),
        listener,
    )
}

/// A frame of `len` payload bytes with its length prefix.
fn frame(len: usize) -> Vec<u8> {
    let mut bytes = u32::try_from(len).expect("len").to_le_bytes().to_vec();
    bytes.extend((0..len).map(|i| (i % 251) as u8));
    bytes
}

/// Reads the next frame with `max_frame` as the maximum, failing the test after a while
/// rather than hanging.
async fn next(reader: &mut PipeReader, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
    tokio::time::timeout(Duration::from_secs(10), reader.read_frame(max_frame))
        .await
        .expect("a frame or an error within 10 s")
}

/// The handle of one end of a pipe, through its reader.
fn handle(reader: &PipeReader) -> BorrowedHandle<'_> {
    reader.pipe.handle()
}

/// The raw handle of one end of a pipe, through its reader.
fn raw(reader: &PipeReader) -> windows_sys::Win32::Foundation::HANDLE {
    handle(reader).as_raw_handle()
}

/// The two pipes of each pipe pair are not listed as endpoints; a name that only looks like
/// half of one is.
#[test]
fn the_pipes_of_a_pair_are_not_listed() {
    let names = ["b.out", "a", "b.in", "c.in", "b"]
        .map(String::from)
        .to_vec();
    assert_eq!(super::endpoint_names(names), ["a", "b", "c.in"]);
}
