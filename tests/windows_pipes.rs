//! Windows named-pipe behaviour that has no Unix counterpart.
#![cfg(windows)]

mod common;

use std::time::Duration;

use common::{within, ProbeClient, TestServer};
use rpc_core::{ConnectError, RpcError};
use rpc_transport::{ClientOptions, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_pipe_is_retried_within_a_bounded_wait() {
    // One connection served at a time: pipe instances are that one plus the one kept waiting.
    let server = TestServer::start_with(ServerOptions::default().max_connections(1));
    let first = server.client().await;
    assert_eq!(first.add(1, 1).await.expect("call"), 2);

    // A raw peer takes the instance the server keeps waiting; the server, at its limit, has not
    // accepted it yet and creates no other.
    let raw = common::RawPeer::connect(&server.address).await;
    // Now every instance is busy: the client retries, then gives up with a distinct error.
    let started = std::time::Instant::now();
    let busy = rpc_transport::connect_with::<ProbeClient>(
        &server.endpoint,
        &ClientOptions::default().busy_timeout(Duration::from_millis(300)),
    )
    .await;
    assert!(
        matches!(busy, Err(RpcError::Connect(ConnectError::Busy { .. }))),
        "{busy:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "gave up without waiting"
    );

    // Recovery after the raw peer leaves unaccepted is not asserted yet: under Wine the server
    // did not accept a new client within the test's patience (open in the Windows issue).
    drop(raw);
    assert_eq!(
        first
            .add(2, 2)
            .await
            .expect("the served client is unaffected"),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pipe_is_not_found() {
    let endpoint =
        rpc_transport::Endpoint::new(&format!("nobody-{}", std::process::id())).expect("name");
    let result =
        rpc_transport::connect_with::<ProbeClient>(&endpoint, &ClientOptions::default()).await;
    assert!(
        matches!(
            result,
            Err(RpcError::Connect(ConnectError::NotFound { .. }))
        ),
        "{result:?}"
    );
}
