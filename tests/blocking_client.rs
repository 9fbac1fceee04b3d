//! The blocking client: from a plain thread with no runtime, and from inside a runtime.

mod common;

use std::time::Duration;

use common::{MathError, ProbeBlockingClient, TestServer};
use rpc_core::RpcError;

/// A server on a runtime of its own, for callers that have none.
fn server() -> (tokio::runtime::Runtime, TestServer) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(async { TestServer::start() });
    (runtime, server)
}

#[test]
fn a_thread_without_a_runtime_calls_the_service() {
    let (_runtime, server) = server();
    let endpoint = server.endpoint.clone();
    let thread = std::thread::spawn(move || {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "no runtime here"
        );
        let probe: ProbeBlockingClient =
            rpc_transport::blocking::connect_with(&endpoint, &Default::default()).expect("connect");
        assert_eq!(probe.add(2, 3).expect("add"), 5);
        assert_eq!(
            probe.div(1, 0).expect("div"),
            Err(MathError::DivisionByZero)
        );
        probe.record("from a plain thread".into()).expect("one-way");
        // Each call blocks up to its deadline, then fails with the same error as async.
        let hurried = probe.with_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(
            hurried.sleep(1, 3_600_000),
            Err(RpcError::DeadlineExceeded)
        ));
        // Clones share the connection; a later call still works.
        assert_eq!(probe.clone().add(40, 2).expect("add"), 42);
    });
    thread.join().expect("the thread's assertions");
}

/// Called from inside a runtime, a blocking method does not panic (no nested `block_on`): the
/// call runs on the background runtime while this thread waits.
#[tokio::test(flavor = "current_thread")]
async fn calling_from_inside_a_runtime_does_not_panic() {
    // Started on another thread: this one is busy driving the test's runtime.
    let (runtime, server) = std::thread::spawn(server).join().expect("server");
    let endpoint = server.endpoint.clone();
    let probe: ProbeBlockingClient =
        rpc_transport::blocking::connect_with(&endpoint, &Default::default()).expect("connect");
    assert_eq!(probe.add(20, 22).expect("add"), 42);
    // The async client underneath, for use here.
    let client = rpc_core::blocking::BlockingClient::as_async(&probe);
    assert_eq!(client.add(1, 1).await.expect("add"), 2);
    drop(probe);
    drop(server);
    runtime.shutdown_background();
}

/// A blocking call made on the background runtime's own thread (as a callback served on a
/// blocking client's connection would make it) fails with a typed error, instead of waiting
/// forever for the thread that would run it.
#[test]
fn a_blocking_call_on_the_background_runtime_fails_instead_of_waiting_for_itself() {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let nested = rpc_core::blocking::run(async { rpc_core::blocking::run(async { 1 }) });
        let _ = done.send(nested);
    });
    let nested = outcome
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the nested call returns");
    assert!(
        matches!(nested, Ok(Err(RpcError::BlockingOnItsRuntime))),
        "{nested:?}"
    );
}

/// A blocking client uploads from an iterator whose `next` blocks (here on a channel the test
/// feeds): while it waits for its next item, the other calls of blocking clients go on, since
/// the iterator is not run on the runtime thread that drives their connections.
#[test]
fn an_upload_waiting_on_its_iterator_holds_up_no_other_call() {
    let (_runtime, server) = server();
    let probe: ProbeBlockingClient =
        rpc_transport::blocking::connect_with(&server.endpoint, &Default::default())
            .expect("connect");
    let (feed, numbers) = std::sync::mpsc::channel::<u32>();
    let uploading = std::thread::spawn({
        let probe = probe.clone();
        move || probe.sum(numbers)
    });
    // The upload waits on its iterator meanwhile; another thread's call is answered.
    let (done, added) = std::sync::mpsc::channel();
    std::thread::spawn({
        let probe = probe.clone();
        move || {
            let _ = done.send(probe.add(2, 3));
        }
    });
    let added = added
        .recv_timeout(common::PATIENCE)
        .expect("the other call returns while the upload waits");
    assert_eq!(added.expect("add"), 5);
    for n in [1, 2, 3] {
        feed.send(n).expect("the upload takes items");
    }
    drop(feed);
    let sum = uploading.join().expect("the upload's thread");
    assert_eq!(sum.expect("sum"), 6);
}
