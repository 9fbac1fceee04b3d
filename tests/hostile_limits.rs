//! Peers that hold what the server gives them: slots, handlers, half-sent frames. Each costs a
//! bounded amount, for a bounded time, and a peer that leaves is noticed at once.

mod common;

use std::time::Duration;

use common::{within, Event, RawPeer, TestServer};
use rpc_core::protocol::Header;
use rpc_core::ServerConfig;
use rpc_transport::ConnectError;

/// A client at its in-flight limit that disconnects: its handlers are dropped and its slot
/// is freed at once, without waiting for the handlers to finish on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_at_its_in_flight_limit_is_seen_at_once() {
    const LIMIT: u32 = 4;
    let mut server = TestServer::start_with(
        ServerConfig::new()
            .max_in_flight(LIMIT as usize)
            .max_connections(1),
    );
    let mut peer = RawPeer::handshake(&server.address).await;
    // The limit in hour-long calls, and one more that waits unread.
    for tag in 0..=LIMIT {
        let frame = RawPeer::call_frame(u64::from(tag) + 1, "sleep", &(tag, 3_600_000u64));
        peer.send_raw(&frame).await.expect("send");
    }
    for tag in 0..LIMIT {
        server.expect_event(&Event::SleepStarted(tag)).await;
    }
    let left = tokio::time::Instant::now();
    drop(peer);
    let mut dropped = Vec::new();
    while dropped.len() < LIMIT as usize {
        match within("the handlers to be dropped", server.events.recv()).await {
            Some(Event::SleepDropped(tag)) => dropped.push(tag),
            Some(_) => {}
            None => panic!("server gone"),
        }
    }
    dropped.sort_unstable();
    assert_eq!(dropped, (0..LIMIT).collect::<Vec<_>>());
    println!(
        "handlers dropped {:?} after the client left",
        left.elapsed()
    );
    // The only slot is free again, once the connection has closed.
    let client = within("the slot to free", async {
        loop {
            match rpc_transport::connect_with::<common::ProbeClient>(
                &server.endpoint,
                &Default::default(),
            )
            .await
            {
                Ok(client) => break client,
                Err(ConnectError::Busy { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(client.add(1, 2).await.expect("add"), 3);
}

/// A frame once started must complete in time: a client that sends part of one and stalls is
/// disconnected after the frame timeout. A client that sends nothing stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_frame_must_complete_in_time() {
    let timeout = Duration::from_millis(200);
    let server = TestServer::start_with(ServerConfig::new().frame_timeout(timeout));
    let mut stalled = RawPeer::handshake(&server.address).await;
    let idle = server.client().await;
    // A frame of 100 bytes, of which 10 arrive.
    let mut partial = 100u32.to_le_bytes().to_vec();
    partial.extend([0; 10]);
    stalled.send_raw(&partial).await.expect("send");
    assert_eq!(stalled.until_closed().await, Vec::<Header>::new());
    // Idle far longer than the frame timeout: not cut.
    tokio::time::sleep(timeout * 3).await;
    assert_eq!(
        within("a call after idling", idle.add(1, 2))
            .await
            .expect("add"),
        3
    );
}

/// A client over the connection limit is told at once that the server is busy, with a typed
/// error, instead of waiting for its handshake to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_connection_limit_is_told_busy() {
    let server = TestServer::start_with(ServerConfig::new().max_connections(1));
    let first = server.client().await;
    let mut patient = rpc_core::ClientConfig::new();
    patient.handshake_timeout(Duration::from_secs(3600));
    let second = within(
        "the answer to a client over the limit",
        rpc_transport::connect_with::<common::ProbeClient>(&server.endpoint, &patient),
    )
    .await;
    assert!(
        matches!(second, Err(ConnectError::Busy { .. })),
        "{second:?}"
    );
    // The same for a tool that connects to whatever is served there.
    let any = within(
        "the answer to a tool over the limit",
        rpc_transport::connect_any(&server.endpoint, &patient),
    )
    .await;
    assert!(matches!(any, Err(ConnectError::Busy { .. })), "{any:?}");
    // The first is served all along, and its slot serves another once it leaves.
    assert_eq!(first.add(1, 1).await.expect("add"), 2);
    drop(first);
    let third = within("a slot to free", async {
        loop {
            match rpc_transport::connect_with::<common::ProbeClient>(&server.endpoint, &patient)
                .await
            {
                Ok(client) => break client,
                Err(ConnectError::Busy { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(third.add(2, 2).await.expect("add"), 4);
}
