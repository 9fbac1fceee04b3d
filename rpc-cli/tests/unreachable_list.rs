//! `rpc list` shows a server it cannot talk to (here a program that does not speak the
//! protocol) as unreachable, with the reason, and leaves out a socket with no server behind it.
#![cfg(unix)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use rpc_cli::remote::{Remote, UNREACHABLE};
use rpc_cli::run::Backend;

#[test]
fn a_server_that_does_not_speak_the_protocol_is_listed_as_unreachable() {
    let dir = tempfile::tempdir().expect("temp dir");
    // This test is alone in its process: nothing else reads the environment meanwhile.
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    let endpoints = dir.path().join("rpc");
    std::fs::create_dir(&endpoints).expect("mkdir");
    std::fs::set_permissions(&endpoints, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A program that answers every connection with a line of text.
    let other = UnixListener::bind(endpoints.join("other.sock")).expect("bind");
    std::thread::spawn(move || {
        for stream in other.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    // A socket whose server is gone.
    drop(UnixListener::bind(endpoints.join("gone.sock")).expect("bind"));

    let listed = Remote::new().expect("backend").list().expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    assert_eq!(entry.name, "other");
    assert!(entry.interface.starts_with(UNREACHABLE), "{entry:?}");
    assert!(entry.interface.contains("handshake failed"), "{entry:?}");
}
