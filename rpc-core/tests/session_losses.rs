//! What a session's caller is told about a call that may have run: a stream's opening stopped
//! by a graceful shutdown, an idempotent call lost and then never sent again because the
//! session failed or the server that came back lacks the method, and a stream of a method that is not idempotent, which is not opened again.

mod session_lab;

use std::time::Duration;

use futures_util::StreamExt;

use rpc_core::session::SessionState;
use rpc_core::RpcError;
use session_lab::{quick, until, within, Lab, Mode};

/// A call of a stream method whose handler has started but not returned its stream when the
/// server begins a graceful shutdown: the handler is stopped, and the caller is told that it
/// may have run (it is not sent again: the method is not idempotent).
#[tokio::test]
async fn a_stream_opening_stopped_by_a_shutdown_may_have_run() {
    let lab = Lab::new();
    let (store, _session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    lab.shared.opens_held.send_replace(true);
    let opening = tokio::spawn({
        let store = store.clone();
        async move { store.progress(7).await.map(|_| ()) }
    });
    lab.shared.until_started("watch", 1).await;
    lab.shut_down();
    let outcome = within("the opening to fail", opening)
        .await
        .expect("joined");
    assert!(
        matches!(
            outcome,
            Err(RpcError::ConnectionLost {
                may_have_run: true,
                ..
            })
        ),
        "{outcome:?}"
    );
}

/// An idempotent call whose connection is lost waits to be sent again; when the session fails
/// instead (the daemon that comes back serves another interface), the call fails as lost and
/// maybe run, not as one that was never sent.
#[tokio::test]
async fn an_idempotent_call_lost_before_the_session_fails_may_have_run() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { store.stall_once().await }
    });
    lab.shared.until_started("stall_once", 1).await;
    lab.set(Mode::OtherInterface);
    lab.kill();
    until(&session, "failure", |s| {
        matches!(s, SessionState::Failed { .. })
    })
    .await;
    let outcome = within("the lost call", stalled).await.expect("joined");
    assert!(
        matches!(
            outcome,
            Err(RpcError::ConnectionLost {
                may_have_run: true,
                ..
            })
        ),
        "{outcome:?}"
    );
}

/// An idempotent call whose connection is lost waits to be sent again; when the server that
/// comes back is an older version without the method, the call fails as lost and maybe run, not
/// with the refusal, which says that nothing was sent.
#[tokio::test]
async fn an_idempotent_call_lost_and_then_refused_by_an_older_server_may_have_run() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { store.stall_once().await }
    });
    lab.shared.until_started("stall_once", 1).await;
    lab.set(Mode::Older);
    lab.kill();
    let outcome = within("the lost call", stalled).await.expect("joined");
    assert!(
        matches!(
            &outcome,
            Err(RpcError::ConnectionLost {
                may_have_run: true,
                ..
            })
        ),
        "{outcome:?}"
    );
    // The session is up, on the older server.
    assert_eq!(within("get", store.get()).await.expect("get"), 0);
    assert!(matches!(session.state(), SessionState::Connected { .. }));
}

/// A subscription whose server shuts down gracefully (its goodbye, then the stream's end with
/// `ShuttingDown`) is opened again on the next connection: the gap marker, then the new
/// stream's items.
#[tokio::test]
async fn a_subscription_ended_by_a_graceful_shutdown_is_reopened() {
    use futures_util::StreamExt;
    let lab = Lab::new();
    let (store, _session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let mut items = within("open", store.watch(100)).await.expect("opened");
    lab.shut_down();
    let gap = within("the gap marker", items.next()).await;
    assert!(
        matches!(gap, Some(Err(RpcError::StreamReopened))),
        "{gap:?}"
    );
    lab.shared.release.send_replace(1);
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(100))
    );
}

/// A stream of a method not marked idempotent (a job's progress) is not opened again after a
/// reconnect, which would run its handler again: it ends with its connection's loss.
#[tokio::test]
async fn a_stream_of_a_method_not_idempotent_is_not_reopened() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let mut items = within("open", store.progress(100)).await.expect("opened");
    lab.shared.release.send_replace(1);
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(100))
    );
    lab.set(Mode::Down);
    lab.kill();
    until(&session, "the loss", |s| !s.is_connected()).await;
    lab.set(Mode::Up);
    let lost = within("the loss", items.next()).await;
    assert!(
        matches!(lost, Some(Err(RpcError::ConnectionLost { .. }))),
        "{lost:?}"
    );
    assert!(within("the end", items.next()).await.is_none());
    within("connected", session.connected())
        .await
        .expect("connected");
    assert_eq!(
        *lab.shared.opened.lock().unwrap_or_else(|e| e.into_inner()),
        [100],
        "opened once"
    );
}

/// A stream that takes a stream from the client is not opened again after a reconnect (its
/// upload is gone): it ends with its connection's loss as `ConnectionLost`, as a stream of a
/// method not idempotent does. Before, it ended with how the connection was lost
/// (`ConnectionClosed` here).
#[tokio::test]
async fn a_stream_that_takes_an_upload_ends_with_the_loss() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let (sender, upload) = rpc_core::Stream::channel(4);
    let mut items = within("open", store.echo(upload)).await.expect("opened");
    sender.send(7).await.expect("send");
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(7))
    );
    lab.set(Mode::Down);
    lab.kill();
    until(&session, "the loss", |s| !s.is_connected()).await;
    let lost = within("the loss", items.next()).await;
    assert!(
        matches!(
            lost,
            Some(Err(RpcError::ConnectionLost {
                may_have_run: true,
                ..
            }))
        ),
        "{lost:?}"
    );
    assert!(within("the end", items.next()).await.is_none());
}
