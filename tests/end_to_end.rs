//! End-to-end behaviour over the real transport: Unix sockets, or named pipes on Windows.
mod common;

use std::time::Duration;

use common::{within, Event, MathError, ProbeClient, TestServer};
use futures_util::future::join_all;
use rpc_core::{Client, ClientConfig, RpcError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_return_values_and_typed_errors() {
    let server = TestServer::start();
    let client = server.client().await;
    assert_eq!(client.add(2, 3).await.expect("add"), 5);
    assert_eq!(client.div(7, 2).await.expect("rpc"), Ok(3));
    assert_eq!(
        client.div(1, 0).await.expect("rpc"),
        Err(MathError::DivisionByZero)
    );
    assert_eq!(
        client.mul(i64::MAX, 2).await.expect("rpc"),
        Err(MathError::Overflow { a: i64::MAX, b: 2 })
    );
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    assert_eq!(client.echo(data.clone()).await.expect("echo"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_on_one_connection() {
    let server = TestServer::start();
    let client = server.client().await;
    let calls = (0..1000i64).map(|i| {
        let client = client.clone();
        async move { (i, client.add(i, 1000 * i).await) }
    });
    let results = within("1000 calls", join_all(calls)).await;
    assert_eq!(results.len(), 1000);
    for (i, result) in results {
        assert_eq!(result.expect("call"), 1001 * i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_come_back_out_of_order() {
    let mut server = TestServer::start();
    let client = server.client().await;
    // A call that takes a minute: it cannot finish on its own while the test runs.
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(1, 60_000).await }
    });
    server.expect_event(&Event::SleepStarted(1)).await;
    // The fast call completes while the slow one is still running on the same connection.
    assert_eq!(client.sleep(2, 0).await.expect("fast"), 2);
    assert!(!slow.is_finished(), "slow call finished first");
    slow.abort();
    server.expect_event(&Event::SleepDropped(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_at_once() {
    let server = TestServer::start();
    let clients = join_all((0..50).map(|_| server.client())).await;
    let calls = clients.iter().enumerate().map(|(n, client)| async move {
        let n = n as i64;
        for i in 0..20 {
            assert_eq!(client.add(n, i).await.expect("call"), n + i);
        }
    });
    within("50 clients", join_all(calls)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_are_delivered_in_order() {
    let mut server = TestServer::start();
    let client = server.client().await;
    for i in 0..10 {
        client.record(format!("line {i}")).await.expect("notify");
    }
    for i in 0..10 {
        server
            .expect_event(&Event::Recorded(format!("line {i}")))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_deadline_fails_the_call_and_stops_the_handler() {
    let mut server = TestServer::start();
    let client = server
        .client()
        .await
        .with_timeout(Some(Duration::from_millis(200)));
    let result = client.sleep(7, 60_000).await;
    assert!(
        matches!(result, Err(RpcError::DeadlineExceeded)),
        "{result:?}"
    );
    server.expect_event(&Event::SleepDropped(7)).await;
    // The connection is still good.
    assert_eq!(client.add(1, 1).await.expect("call"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_call_cancels_the_handler() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(9, 60_000).await }
    });
    server.expect_event(&Event::SleepStarted(9)).await;
    call.abort();
    server.expect_event(&Event::SleepDropped(9)).await;
    assert_eq!(client.add(2, 2).await.expect("call"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_disconnects_mid_call() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(10, 60_000).await }
    });
    server.expect_event(&Event::SleepStarted(10)).await;
    drop(client);
    call.abort();
    server.expect_event(&Event::SleepDropped(10)).await;
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_calls_in_flight() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.compute(11).await }
    });
    server.expect_event(&Event::Computing(11)).await;
    server.shutdown.cancel();
    // The call in flight, which can finish only once the server has begun to drain (its
    // goodbye has reached the client), is answered.
    let connection = client.handle().connection().expect("a direct connection");
    within("the goodbye", connection.shutting_down()).await;
    common::release(11);
    assert_eq!(
        within("call in flight", in_flight)
            .await
            .expect("join")
            .expect("call"),
        11
    );
    // The server stops and its endpoint disappears.
    within("server to stop", &mut server.task)
        .await
        .expect("join")
        .expect("run");
    #[cfg(unix)]
    assert!(
        !std::path::Path::new(&server.address).exists(),
        "socket left behind"
    );
    // New calls fail, and so do new connections.
    let after = client.add(1, 2).await;
    assert!(
        matches!(
            after,
            Err(RpcError::ShuttingDown | RpcError::ConnectionClosed)
        ),
        "{after:?}"
    );
    let refused =
        rpc_transport::connect_with::<ProbeClient>(&server.endpoint, &Default::default()).await;
    assert!(
        matches!(refused, Err(rpc_transport::ConnectError::NotFound { .. })),
        "{refused:?}"
    );
}

/// A client hears that its server is shutting down as soon as the server says so, while its
/// call in flight still runs (and is answered afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hears_the_shutdown_while_its_call_runs() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let connection = client
        .handle()
        .connection()
        .expect("a direct connection")
        .clone();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.compute(9001).await }
    });
    server.expect_event(&Event::Computing(9001)).await;
    assert!(!connection.is_shutting_down());
    server.shutdown.cancel();
    within("the client hears the shutdown", connection.shutting_down()).await;
    assert!(connection.is_shutting_down());
    assert!(!connection.is_closed(), "the call in flight keeps it open");
    common::release(9001);
    assert_eq!(
        within("the call in flight", in_flight)
            .await
            .expect("join")
            .expect("call"),
        9001
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_calls_that_never_end() {
    let mut server = TestServer::start_with(
        rpc_core::ServerConfig::new().shutdown_timeout(Duration::from_millis(200)),
    );
    let client = server.client().await.with_timeout(None);
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(12, 3_600_000).await }
    });
    server.expect_event(&Event::SleepStarted(12)).await;
    server.shutdown.cancel();
    within("server to stop", &mut server.task)
        .await
        .expect("join")
        .expect("run");
    server.expect_event(&Event::SleepDropped(12)).await;
    let result = within("stuck call to fail", stuck).await.expect("join");
    assert!(
        matches!(result, Err(RpcError::ConnectionClosed)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_per_connection_are_limited_not_dropped() {
    let mut server = TestServer::start_with(rpc_core::ServerConfig::new().max_in_flight(2));
    let client = server.client().await;
    let calls: Vec<_> = (0..6u32)
        .map(|tag| {
            let client = client.clone();
            tokio::spawn(async move { client.sleep(100 + tag, 100).await })
        })
        .collect();
    let mut running = 0usize;
    let mut max_running = 0usize;
    let mut finished = 0;
    while finished < 6 {
        match within("sleep events", server.events.recv())
            .await
            .expect("event")
        {
            Event::SleepStarted(_) => running += 1,
            Event::SleepFinished(_) => {
                running -= 1;
                finished += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        max_running = max_running.max(running);
    }
    assert_eq!(max_running, 2, "limit not applied");
    for call in calls {
        call.await.expect("join").expect("every call answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_the_peer() {
    let server = TestServer::start();
    let client = server.client().await;
    let (pid, uid, sid) = client.whoami().await.expect("call");
    assert_eq!(pid, Some(std::process::id()));
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(uid, Some(unsafe { libc::geteuid() }));
        assert_eq!(sid, None);
    }
    #[cfg(windows)]
    {
        assert_eq!(uid, None);
        let sid = sid.expect("the peer's SID");
        assert!(sid.starts_with("S-1-5-"), "{sid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_fast_when_the_server_goes_away() {
    let mut server =
        TestServer::start_with(rpc_core::ServerConfig::new().shutdown_timeout(Duration::ZERO));
    let client = server
        .client_with(ClientConfig::new().default_timeout(None))
        .await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(13, 3_600_000).await }
    });
    server.expect_event(&Event::SleepStarted(13)).await;
    server.shutdown.cancel();
    let result = within("call to fail", call).await.expect("join");
    assert!(
        matches!(result, Err(RpcError::ConnectionClosed)),
        "{result:?}"
    );
    assert!(rpc_core::Client::handle(&client).is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_awkward_size_round_trip() {
    // Around the 4 KiB and 64 KiB buffers a Windows message pipe is read through, and large.
    let max = 4 * 1024 * 1024;
    let server = TestServer::start_with(rpc_core::ServerConfig::new().max_frame(max));
    let client = server.client().await;
    // The argument frame is the payload plus 4 bytes of length, the header and a length varint.
    let largest = max as usize - 32;
    for size in [
        0,
        1,
        4095,
        4096,
        4097,
        10_000,
        65_535,
        65_536,
        65_537,
        1 << 20,
        largest,
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let back = within("echo", client.echo(data.clone()))
            .await
            .expect("echo");
        assert!(
            back == data,
            "size {size} came back as {} bytes",
            back.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_connect_at_once() {
    let server = TestServer::start();
    let options = rpc_core::ClientConfig::default();
    let connects =
        (0..32).map(|_| rpc_transport::connect_with::<ProbeClient>(&server.endpoint, &options));
    let clients = within("32 connects", join_all(connects)).await;
    for (i, client) in clients.into_iter().enumerate() {
        let client = client.expect("no client refused");
        assert_eq!(client.add(i as i64, 1).await.expect("call"), i as i64 + 1);
    }
}

/// A server that closed its reading end while its writing end stays open: the client's next
/// write fails with a broken pipe, which is the connection closed, not an I/O error to decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_server_that_closed_its_end_is_the_connection_closed() {
    use bytes::Bytes;
    use rpc_core::frame::{FrameRead, FrameWrite};
    use rpc_core::protocol::{Header, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};

    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let (welcomed, welcome_sent) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
        let welcome = common::frame(
            &Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            },
            &[],
        );
        writer
            .write_frames(&[Bytes::from(welcome)])
            .await
            .expect("welcome");
        // The reading end closes; the writing end stays open until the test ends.
        drop(reader);
        let _open = writer;
        let _ = welcomed.send(());
        std::future::pending::<()>().await;
    });
    let client: ProbeClient =
        rpc_core::connect(client_reader, client_writer, &ClientConfig::default())
            .await
            .expect("connect");
    within("the server to close its end", welcome_sent)
        .await
        .expect("welcomed");
    let result = within("the call to fail", client.add(1, 2)).await;
    assert!(
        matches!(result, Err(RpcError::ConnectionClosed)),
        "{result:?}"
    );
    server.abort();
}

/// A call's future is what callers keep by the hundred (`join_all`, `FuturesUnordered`) and
/// move on every push: a call through a session, several times larger, runs on the heap
/// instead of making every call's future as large (it was 680 bytes for `add(i64, i64)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_future_stays_small() {
    let server = TestServer::start();
    let client = server.client().await;
    let call = client.add(2, 3);
    let size = std::mem::size_of_val(&call);
    assert!(
        size <= 400,
        "the future of add(i64, i64) takes {size} bytes"
    );
    assert_eq!(call.await.expect("add"), 5);
}
