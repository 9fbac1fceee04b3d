//! A client whose runtime shuts down while another runtime calls it: every call in flight and
//! every later call fails at once with a typed error, none hangs.

mod common;

use std::time::Duration;

use common::{within, Event, TestServer};
use rpc_core::RpcError;

#[test]
fn calls_fail_at_once_when_the_clients_runtime_is_dropped() {
    // The server on a runtime of its own, for the whole test.
    let server_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = server_runtime.block_on(async { TestServer::start() });

    // The client is made on runtime 1, which runs its connection's tasks.
    let runtime1 = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime1.block_on(server.client());
    let client = client.with_timeout(None);

    // A call in flight from runtime 2, waiting for a handler that takes an hour.
    let runtime2 = tokio::runtime::Runtime::new().expect("runtime");
    let in_flight = runtime2.spawn({
        let client = client.clone();
        async move { client.sleep(1, 3_600_000).await }
    });
    server_runtime.block_on(server.expect_event(&Event::SleepStarted(1)));

    drop(runtime1);

    runtime2.block_on(async {
        let result = within("the call in flight to fail", in_flight)
            .await
            .expect("join");
        assert!(
            matches!(result, Err(RpcError::ConnectionClosed)),
            "{result:?}"
        );
        let later = within("a later call to fail", client.add(1, 2)).await;
        assert!(
            matches!(later, Err(RpcError::ConnectionClosed)),
            "{later:?}"
        );
        assert!(rpc_core::Client::handle(&client).is_closed());
    });
    // The server sees the connection go and drops the handler.
    server_runtime.block_on(async {
        // Shorter than `expect_event`'s own patience, which fails the test when it runs out.
        let seen = tokio::time::timeout(
            Duration::from_secs(8),
            server.expect_event(&Event::SleepDropped(1)),
        )
        .await;
        if cfg!(windows) && seen.is_err() {
            // mio leaks a named pipe's handle when the runtime it is registered with is gone
            // while a read of the pipe is in flight (tokio-rs/mio#1944, fix proposed in
            // tokio-rs/mio#2003): the pipe stays open until the client process exits, and the
            // server sees the client go then.
            println!(
                "KNOWN LIMITATION: the server did not see the client go within 8 s; its pipe \
                 handle is held by mio until the client process exits (tokio-rs/mio#1944)"
            );
            return;
        }
        seen.expect("the server drops the handler");
    });
}

/// The same, with the client's runtime dropped before its connection's tasks ever ran: a
/// current-thread runtime's `block_on` returns as soon as the connect is done, before it polls
/// the tasks the connect spawned.
#[test]
fn calls_fail_at_once_when_the_runtime_is_dropped_before_the_tasks_ran() {
    let server_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = server_runtime.block_on(async { TestServer::start() });

    let runtime1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime1.block_on(server.client());
    drop(runtime1);

    let runtime2 = tokio::runtime::Runtime::new().expect("runtime");
    runtime2.block_on(async {
        let result = within("a call to fail", client.add(1, 2)).await;
        assert!(
            matches!(result, Err(RpcError::ConnectionClosed)),
            "{result:?}"
        );
        assert!(rpc_core::Client::handle(&client).is_closed());
    });
}
