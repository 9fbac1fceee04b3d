//! Callbacks: the server calls the client on the connection the client opened; what a
//! callback inherits from its call, and how kept handles and shutdown end.

mod common;
mod installer_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::within;
use installer_support::{
    client, install_asks_and_reports, serve, FrontEnd, FrontEndSeen, InstallError, InstallerClient,
    PromptClient, PromptServer,
};
use rpc_core::{Client, ClientConfig, RpcError, ServerConfig};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_its_client_and_reports_progress() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    let yes = client(&served, true, &seen).await;
    install_asks_and_reports(&yes, &seen).await;
    let no = client(&served, false, &Arc::default()).await;
    assert_eq!(
        no.install("x".into()).await.expect("call"),
        Err(InstallError::Declined)
    );
}

/// A handler awaiting a callback whose handler calls the server again, three levels deep, on a
/// server and a client that each run one call at a time: each callback waiting for its reply
/// lends its caller's slot (up to the limit again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_nest_without_deadlock_at_one_call_in_flight() {
    let served = serve(ServerConfig::new().max_in_flight(1));
    let seen = Arc::new(FrontEndSeen::default());
    let mut config = ClientConfig::new();
    config
        .serve_callbacks(PromptServer::new(FrontEnd {
            answer: true,
            seen: Arc::clone(&seen),
        }))
        .max_callbacks_in_flight(1);
    let installer: InstallerClient = rpc_transport::connect_with(&served.endpoint, &config)
        .await
        .expect("connect");
    // nest(1) on the server -> check(0) on the client -> nest(0) on the server.
    let depth = within("the nested calls", installer.nest(1)).await;
    assert_eq!(depth.expect("call"), 2);
    // Again, and beside it a plain call that waits its turn.
    let (nested, plain) = tokio::join!(installer.nest(1), installer.nest(0));
    assert_eq!((nested.expect("call"), plain.expect("call")), (2, 0));
}

/// A callback made inside a call carries that call's deadline at the latest, and is dropped on
/// the client when the call is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_inherit_the_deadline_and_are_cancelled_with_their_call() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    let installer = client(&served, true, &seen).await;
    let timeout = Duration::from_secs(20);
    let started = Instant::now();
    let call = tokio::spawn({
        let installer = installer.handle().with_timeout(Some(timeout));
        let installer = <InstallerClient as rpc_core::Client>::from_handle(installer);
        async move { installer.ask_waiting().await }
    });
    seen.until("the callback", |seen| {
        !seen.deadlines.lock().expect("lock").is_empty()
    })
    .await;
    let deadline = seen.deadlines.lock().expect("lock")[0].expect("a deadline");
    // Each hop passes on the time left, so the callback's deadline is at most the call's
    // timeout after any moment since the callback started. Without the inheritance it would
    // be the default 30 s from the callback's start.
    assert!(
        deadline <= Instant::now() + timeout,
        "the callback's deadline is {:?} after the call's start",
        deadline - started
    );
    call.abort();
    seen.until("the callback to be dropped", |seen| {
        seen.waits_dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(installer.nest(0).await.expect("call"), 0);
}

/// Handles kept after their client leaves fail at once; a server that keeps the handles of
/// many clients sees each one go, and the others still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_handles_see_their_client_leave() {
    let served = serve(&ServerConfig::default());
    let (first_seen, second_seen) = (Arc::new(FrontEndSeen::default()), Arc::default());
    let first = client(&served, true, &first_seen).await;
    let second = client(&served, false, &second_seen).await;
    assert_eq!(first.keep().await.expect("keep"), 1);
    assert_eq!(second.keep().await.expect("keep"), 2);
    let kept: Vec<PromptClient> = served.seen.kept.lock().expect("lock").clone();
    drop(first);
    within(
        "the first client to be seen leaving",
        kept[0]
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
    let started = Instant::now();
    let refused = kept[0].confirm("install again?".into()).await;
    assert!(
        matches!(refused, Err(RpcError::ConnectionClosed)),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "failed at once");
    assert!(!kept[1].handle().is_closed());
    assert!(!kept[1].confirm("install x?".into()).await.expect("call"));
    kept[1].progress(7, 9).await.expect("send");
    second_seen
        .until("the broadcast", |seen| {
            !seen.progress.lock().expect("lock").is_empty()
        })
        .await;
}

/// A connection that the server's shutdown timeout closes while a handler waits on a callback:
/// the handles to the client's callbacks that handlers kept fail and see the connection close,
/// and the client sees it close too, rather than both waiting on a connection no task serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_shutdown_timeout_fails_kept_handles() {
    let served = serve(ServerConfig::new().shutdown_timeout(Duration::from_millis(10)));
    let seen = Arc::new(FrontEndSeen::default());
    let installer = client(&served, true, &seen).await;
    assert_eq!(installer.keep().await.expect("keep"), 1);
    let kept: Vec<PromptClient> = served.seen.kept.lock().expect("lock").clone();
    // A handler that waits on a callback that never answers: the drain cannot finish.
    let waiting = tokio::spawn({
        let installer = installer.clone();
        async move { installer.ask_waiting().await }
    });
    seen.until("the callback to wait", |seen| {
        !seen.deadlines.lock().expect("lock").is_empty()
    })
    .await;
    served.shutdown.cancel();
    within(
        "the kept handle to see the connection close",
        kept[0]
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
    let refused = within(
        "a call on the kept handle",
        kept[0].confirm("again?".into()),
    )
    .await;
    assert!(
        matches!(refused, Err(RpcError::ConnectionClosed)),
        "{refused:?}"
    );
    client_sees_the_connection_close(&installer).await;
    let ended = within("the waiting call to end", waiting)
        .await
        .expect("join");
    assert!(ended.is_err(), "{ended:?}");
}

/// A server shutting down answers the calls in flight, also those that wait on their client:
/// it goes on reading, so that a callback's reply reaches the handler waiting for it, while a
/// call sent after the goodbye is refused with `ShuttingDown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_still_takes_the_replies_its_calls_wait_on() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    seen.hold.store(true, Ordering::SeqCst);
    let installer = client(&served, true, &seen).await;
    let install = tokio::spawn({
        let installer = installer.clone();
        async move { installer.install("pkg".into()).await }
    });
    seen.until("the question", |seen| {
        seen.asked.load(Ordering::SeqCst) == 1
    })
    .await;
    served.shutdown.cancel();
    // Calls until one is refused: the server is draining (or the client has its goodbye).
    let refused = loop {
        match within("a call while shutting down", installer.nest(0)).await {
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(
            refused,
            RpcError::ShuttingDown | RpcError::Remote(rpc_core::protocol::WireError::ShuttingDown)
        ),
        "{refused:?}"
    );
    seen.release.notify_one();
    let installed = within("the install", install).await.expect("join");
    assert_eq!(installed.expect("call"), Ok(3));
    assert_eq!(seen.progress.lock().expect("lock").len(), 3);
}

/// When the server goes, the one-way callbacks it sent still run to their end on the client, in
/// order, also those waiting their turn, as a server runs the one-way calls of a client that
/// leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_callbacks_run_on_after_the_server_goes() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    seen.progress_held.send_replace(true);
    let installer = client(&served, true, &seen).await;
    // The progress went out before the reply: the client has it once the call returns.
    assert_eq!(
        installer.install("editor".into()).await.expect("call"),
        Ok(6)
    );
    served.shutdown.cancel();
    client_sees_the_connection_close(&installer).await;
    seen.progress_held.send_replace(false);
    seen.until("the progress", |seen| {
        seen.progress.lock().expect("lock").len() == 3
    })
    .await;
    assert_eq!(
        *seen.progress.lock().expect("lock"),
        [(1, 3), (2, 3), (3, 3)]
    );
}

/// Dropping the client's last handle stops the one-way callbacks still running after the server
/// went, as it does while the server is there. Before, they ran on, detached, after the client
/// was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_callbacks_left_running_stop_with_the_clients_last_handle() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    seen.progress_held.send_replace(true);
    let installer = client(&served, true, &seen).await;
    assert_eq!(
        installer.install("editor".into()).await.expect("call"),
        Ok(6)
    );
    served.shutdown.cancel();
    client_sees_the_connection_close(&installer).await;
    drop(installer);
    seen.until("the running progress handler to be dropped", |seen| {
        seen.progress_dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(seen.progress.lock().expect("lock").is_empty());
}

/// A callback's handle back to the server has the client's own default timeout, not the
/// library's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_a_callback_have_the_clients_default_timeout() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    let timeout = Some(Duration::from_secs(7));
    let mut config = ClientConfig::new();
    config
        .serve_callbacks(PromptServer::new(FrontEnd {
            answer: true,
            seen: Arc::clone(&seen),
        }))
        .default_timeout(timeout);
    let installer: InstallerClient = served.client(&config).await;
    // nest(1) on the server -> check(0) on the client, which calls nest(0) on the server.
    assert_eq!(installer.nest(1).await.expect("call"), 2);
    assert_eq!(*seen.check_timeouts.lock().expect("lock"), [timeout]);
}

/// Waits until `installer`'s connection has closed.
async fn client_sees_the_connection_close(installer: &InstallerClient) {
    within(
        "the client to see the connection close",
        installer
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
}
