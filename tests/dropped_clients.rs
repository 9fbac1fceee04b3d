//! Dropping the last handle of a client frees its connection and its tasks at once, whatever
//! the server does: here a server that welcomes each client and then neither reads nor closes.
//! Alone in its test binary, so that the descriptors counted are this test's.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{private_dir, within, ProbeClient};
use rpc_core::frame::{FrameRead, FrameReader};
use rpc_core::protocol::{Header, PROTOCOL_VERSION};
use rpc_transport::unix::EndpointExt;
use rpc_transport::Endpoint;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Waits until `done` holds, checking every few milliseconds: descriptors and tasks have no
/// event to wait on.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_clients_of_a_hung_server_free_their_descriptors_and_tasks() {
    const CLIENTS: usize = 200;
    let dir = private_dir();
    let endpoint = Endpoint::new("hung").expect("name").in_dir(dir.path());
    let listener = UnixListener::bind(dir.path().join("hung.sock")).expect("bind");
    // Welcomes every client, then keeps its connection without reading or closing it.
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let mut reader = FrameReader::new(read);
            let _hello = reader.read_frame(1 << 20).await;
            let welcome = postcard::to_stdvec(&Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: 1 << 20,
            })
            .expect("encode");
            let mut frame = (welcome.len() as u32).to_le_bytes().to_vec();
            frame.extend(welcome);
            write.write_all(&frame).await.expect("welcome");
            held.push((reader, write));
        }
    });
    let metrics = tokio::runtime::Handle::current().metrics();
    let descriptors = open_descriptors();
    let tasks = metrics.num_alive_tasks();

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client: ProbeClient = within(
            "a connection",
            rpc_transport::connect_with(&endpoint, &Default::default()),
        )
        .await
        .expect("connect");
        clients.push(client);
    }
    let connected = open_descriptors();
    assert!(
        connected >= descriptors + 2 * CLIENTS,
        "{descriptors} -> {connected}"
    );
    drop(clients);

    // The hung server still holds its ends; the clients' ends and tasks are gone.
    let dropped = tokio::time::Instant::now();
    until("the clients' descriptors to close", || {
        open_descriptors() <= descriptors + CLIENTS
    })
    .await;
    until("the clients' tasks to end", || {
        metrics.num_alive_tasks() <= tasks
    })
    .await;
    println!(
        "{CLIENTS} dropped clients: descriptors {descriptors} -> {connected} -> {} in {:?}",
        open_descriptors(),
        dropped.elapsed()
    );
    hung.abort();
}
