//! Sessions over in-memory connections whose server the test kills, refuses or replaces: what
//! calls in flight, new calls, idempotent calls and streams see, and the session's state.

mod session_lab;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::session::{SessionConfig, SessionState};
use rpc_core::RpcError;
use session_lab::{connections, quick, until, within, Lab, Mode};

/// A call in flight when the connection drops fails at once, saying it may have run; the
/// session goes to reconnecting with the reason, and is back with its second connection.
#[tokio::test]
async fn call_in_flight_fails_at_once_and_the_session_comes_back() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), None);
    assert_eq!(within("first call", store.bump()).await.expect("bump"), 1);
    assert_eq!(connections(&session.state()), Some(1));

    // No deadline: only the connection's end can end this call.
    let hanging = tokio::spawn({
        let store = store.clone();
        async move { store.hang().await }
    });
    lab.shared.until_started("hang", 1).await;
    lab.set(Mode::Down);
    let mut states = session.watch();
    lab.kill();
    let outcome = within("the call in flight to fail", hanging)
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
    let reconnecting = within(
        "the session to see the loss",
        states.wait_for(|s| !s.is_connected()),
    )
    .await
    .map(|s| s.clone())
    .expect("alive");
    assert!(
        matches!(reconnecting, SessionState::Connecting { lost: Some(_), .. }),
        "{reconnecting:?}"
    );
    let retrying = until(&session, "a failed attempt", |s| {
        matches!(
            s,
            SessionState::Connecting {
                last_error: Some(_),
                next_attempt: Some(_),
                ..
            }
        )
    })
    .await;
    assert!(matches!(retrying, SessionState::Connecting { attempts, .. } if attempts >= 1));

    lab.set(Mode::Up);
    let back = until(&session, "the second connection", |s| s.is_connected()).await;
    assert_eq!(connections(&back), Some(2));
    assert_eq!(within("a call after", store.bump()).await.expect("bump"), 2);
}

/// A call made while the session is down waits for it within its deadline: it is sent once the
/// server is back; with a short deadline it fails with `Disconnected` and the last error.
#[tokio::test]
async fn new_calls_wait_for_the_session_within_their_deadline() {
    let lab = Lab::new();
    lab.set(Mode::Down);
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    until(&session, "a failed attempt", |s| {
        matches!(
            s,
            SessionState::Connecting {
                last_error: Some(_),
                ..
            }
        )
    })
    .await;

    let hurried = store.with_timeout(Some(Duration::from_millis(50)));
    let outcome = within("the hurried call", hurried.bump()).await;
    assert!(
        matches!(outcome, Err(RpcError::Disconnected(Some(_)))),
        "{outcome:?}"
    );
    assert_eq!(lab.shared.bumps.load(Ordering::SeqCst), 0, "not sent");

    let patient = tokio::spawn({
        let store = store.clone();
        async move { store.bump().await }
    });
    lab.set(Mode::Up);
    let outcome = within("the waiting call", patient).await.expect("joined");
    assert_eq!(outcome.expect("sent once the session is back"), 1);
}

/// An idempotent call whose connection drops is sent again on the next connection, within its
/// deadline, and succeeds; a call not marked idempotent ran once and is not sent again.
#[tokio::test]
async fn idempotent_calls_are_sent_again_and_others_never() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { store.stall_once().await }
    });
    lab.shared.until_started("stall_once", 1).await;
    lab.kill();
    let outcome = within("the idempotent call", stalled)
        .await
        .expect("joined");
    assert_eq!(outcome.expect("sent again and answered"), 2);
    assert_eq!(connections(&session.state()), Some(2));

    let hanging = tokio::spawn({
        let store = store.clone();
        async move { store.hang().await }
    });
    lab.shared.until_started("hang", 1).await;
    lab.kill();
    let outcome = within("the other call", hanging).await.expect("joined");
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
    until(&session, "the third connection", |s| {
        connections(s) == Some(3)
    })
    .await;
    // Still one run: nothing sent it again.
    within("a call after", store.get()).await.expect("get");
    let runs = lab
        .shared
        .started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|n| **n == "hang")
        .count();
    assert_eq!(runs, 1);
}

/// A server of another service fails the session with the reason, and nothing more is
/// tried; calls fail with `SessionFailed`; "retry now" tries again.
#[tokio::test]
async fn a_server_of_another_interface_fails_the_session() {
    let lab = Lab::new();
    lab.set(Mode::OtherInterface);
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let failed = until(&session, "failure", |s| {
        matches!(s, SessionState::Failed { .. })
    })
    .await;
    let SessionState::Failed { error, .. } = failed else {
        unreachable!("waited for it");
    };
    let rejected = error.downcast_ref::<RpcError>();
    assert!(matches!(rejected, Some(RpcError::Rejected(_))), "{error}");
    let reason = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("service \"Store\" is not served here")),
        "{reason:?}"
    );

    let outcome = within("a call", store.get()).await;
    assert!(
        matches!(outcome, Err(RpcError::SessionFailed(_))),
        "{outcome:?}"
    );
    assert!(rpc_core::Client::handle(&store).is_closed());
    assert_eq!(
        session.connected().await.map_err(|e| e.to_string()),
        Err("the session has failed".to_owned())
    );
    // Not retried: one attempt, and still one after more calls.
    assert_eq!(lab.attempts.load(Ordering::SeqCst), 1);

    lab.set(Mode::Up);
    session.retry_now();
    within("connected", session.connected())
        .await
        .expect("connected");
    assert_eq!(within("a call", store.get()).await.expect("get"), 0);
    assert_eq!(lab.attempts.load(Ordering::SeqCst), 2);
}

/// A stream opened through the session is opened again with the same arguments after a
/// reconnect: one `StreamReopened` marks the gap, then the new stream's items.
#[tokio::test]
async fn a_stream_is_reopened_with_a_gap_marker() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let mut items = within("open", store.watch(100)).await.expect("opened");
    lab.shared.release.send_replace(1);
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(100))
    );
    lab.shared.release.send_replace(2);
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(101))
    );

    lab.set(Mode::Down);
    lab.kill();
    until(&session, "the loss", |s| !s.is_connected()).await;
    lab.set(Mode::Up);
    let gap = within("the gap marker", items.next()).await;
    assert!(
        matches!(gap, Some(Err(RpcError::StreamReopened))),
        "{gap:?}"
    );
    assert_eq!(
        *lab.shared.opened.lock().unwrap_or_else(|e| e.into_inner()),
        [100, 100],
        "reopened with the same arguments"
    );
    lab.shared.release.send_replace(3);
    assert_eq!(
        within("an item", items.next()).await.map(|i| i.ok()),
        Some(Some(100))
    );
    assert_eq!(connections(&session.state()), Some(2));
}

/// A reopening that outlasts its deadline (a server slow to serve again after a restart) is
/// tried again: the subscription goes on, rather than ending with `DeadlineExceeded`.
#[tokio::test]
async fn a_slow_reopening_is_tried_again() {
    let lab = Lab::new();
    let (store, _session) = lab.start(&quick(), Some(Duration::from_millis(200)));
    let mut items = within("open", store.watch(100)).await.expect("opened");
    lab.shared.opens_held.send_replace(true);
    lab.kill();
    // The stream is reopened as it is read.
    let reading = tokio::spawn(async move {
        let gap = items.next().await;
        (gap, items)
    });
    // The first reopening waits for the held server past its deadline; the next one is made.
    lab.shared.until_started("watch", 3).await;
    lab.shared.opens_held.send_replace(false);
    let (gap, mut items) = within("the gap marker", reading).await.expect("joined");
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

/// A call with a stream from the client goes through the session once it is connected; when its
/// connection is lost it fails at once and is not sent again (its stream cannot be).
#[tokio::test]
async fn a_call_with_a_stream_is_sent_once() {
    let lab = Lab::new();
    lab.set(Mode::Down);
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.sum(futures_util::stream::iter([1, 2, 3])).await }
    });
    until(&session, "a failed attempt", |s| {
        matches!(
            s,
            SessionState::Connecting {
                last_error: Some(_),
                ..
            }
        )
    })
    .await;
    lab.set(Mode::Up);
    let sum = within("the call, sent once connected", waiting)
        .await
        .expect("joined");
    assert_eq!(sum.expect("sum"), 6);

    let stuck = tokio::spawn({
        let store = store.clone();
        async move { store.sum(futures_util::stream::iter([5, 0])).await }
    });
    lab.shared.until_started("sum", 2).await;
    lab.kill();
    let outcome = within("the call to fail", stuck).await.expect("joined");
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
    until(&session, "the next connection", |s| {
        connections(s) == Some(2)
    })
    .await;
    within("a call after", store.get()).await.expect("get");
    let runs = lab
        .shared
        .started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|n| **n == "sum")
        .count();
    assert_eq!(runs, 2, "not sent again");
}

/// A call with a stream made after the server said it is shutting down (its goodbye read, its
/// connection still open while a call drains) is not sent on that connection: it waits for
/// the next one, as other calls do, instead of failing as a lost connection.
#[tokio::test]
async fn a_call_with_a_stream_skips_a_server_that_is_shutting_down() {
    let lab = Lab::new();
    let (store, session) = lab.start(&quick(), Some(Duration::from_secs(20)));
    let draining = tokio::spawn({
        let store = store.clone();
        async move { store.hang().await }
    });
    lab.shared.until_started("hang", 1).await;
    let goodbye = lab.goodbyes.notified();
    lab.shut_down();
    within("the goodbye", goodbye).await;
    let sum = within("the call", store.sum(futures_util::stream::iter([1, 2]))).await;
    assert_eq!(sum.expect("sent on the next connection"), 3);
    assert_eq!(connections(&session.state()), Some(2));
    draining.abort();
}

/// The runtime that drives a session shuts down while a call without a deadline, made from
/// another runtime, waits for a connection: the call fails at once instead of hanging, and the
/// session's state says it has stopped.
#[test]
fn a_session_whose_runtime_dies_fails_its_waiting_calls() {
    let lab = Lab::new();
    lab.set(Mode::Down);
    let driving = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (store, session) = driving.block_on(async { lab.start(&quick(), None) });
    let calling = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let waiting = calling.spawn(async move { store.bump().await });
    // The driving runtime runs until the session has tried and failed once: the call waits.
    driving.block_on(until(&session, "a failed attempt", |s| {
        matches!(
            s,
            SessionState::Connecting {
                last_error: Some(_),
                ..
            }
        )
    }));
    drop(driving);
    let outcome = calling
        .block_on(within("the waiting call", waiting))
        .expect("joined");
    assert!(
        matches!(outcome, Err(RpcError::ConnectionClosed)),
        "{outcome:?}"
    );
    // Whoever watches the state (a GUI) sees that the session has stopped, not that it is
    // still connecting.
    assert!(
        matches!(session.state(), SessionState::Stopped { .. }),
        "{:?}",
        session.state()
    );
}

/// "Retry now" on a failed session whose runtime has shut down changes nothing: its task is
/// gone, so calls still fail at once (not wait forever for a connection nobody makes), and
/// `connected` says the session has ended.
#[test]
fn retry_after_the_runtime_died_does_not_bring_back_waiting() {
    let lab = Lab::new();
    lab.set(Mode::OtherInterface);
    let driving = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (store, session) = driving.block_on(async { lab.start(&quick(), None) });
    driving.block_on(until(&session, "failure", |s| {
        matches!(s, SessionState::Failed { .. })
    }));
    drop(driving);
    lab.set(Mode::Up);
    session.retry_now();
    let calling = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = calling.block_on(within("a call", store.bump()));
    assert!(
        matches!(outcome, Err(RpcError::ConnectionClosed)),
        "{outcome:?}"
    );
    let connected = calling.block_on(within("connected", session.connected()));
    assert!(
        matches!(connected, Err(RpcError::ConnectionClosed)),
        "{connected:?}"
    );
}

/// The backoff doubles from its base up to its cap.
#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut config = SessionConfig::new();
    config
        .backoff_base(Duration::from_millis(10))
        .backoff_cap(Duration::from_millis(70))
        .jitter(2.0);
    let waits: Vec<_> = (1..=6).map(|n| config.get_backoff(n).as_millis()).collect();
    assert_eq!(waits, [10, 20, 40, 70, 70, 70]);
    assert_eq!(config.get_jitter(), 1.0);
    assert_eq!(config.get_backoff(u32::MAX), Duration::from_millis(70));
    // No setting makes it redial without a pause.
    config
        .backoff_base(Duration::ZERO)
        .backoff_cap(Duration::ZERO);
    assert_eq!(config.get_backoff(1), Duration::from_millis(1));
    assert_eq!(config.get_backoff(u32::MAX), Duration::from_millis(1));
}
