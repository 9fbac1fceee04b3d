//! The waits of a session's backoff: a server that takes each connection and drops it as soon
//! as the handshake is done counts as a failed attempt, so the session is not redialled in a
//! loop, whether calls go on or not; calls that lose their connection never cut a wait short;
//! "retry now" does; a subscription slow to open again waits the backoff between openings.
//! (Paused time: the clock moves by the session's waits only.)

mod session_lab;

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::session::SessionState;
use rpc_core::session::{Session, SessionConfig};
use session_lab::{connections, until, Lab, Mode, StoreClient};

/// Starts a session against a server that drops its next five connections at once, with a
/// backoff of 100 ms doubling to 1 s and no jitter.
fn flapping() -> (StoreClient, Session) {
    let lab = Lab::new();
    lab.flaps.store(5, Ordering::SeqCst);
    let mut config = SessionConfig::new();
    config
        .backoff_base(Duration::from_millis(100))
        .backoff_cap(Duration::from_secs(1))
        .jitter(0.0);
    lab.start(&config, None)
}

/// Waits for the sixth connection, which stays; fails unless the waits before connections 2 to
/// 6 add up to 100 + 200 + 400 + 800 + 1000 ms at least. Before, each came at once.
async fn sixth_connection_after_the_backoff(session: &Session, started: tokio::time::Instant) {
    until(session, "the connection that stays", |state| {
        connections(state) == Some(6)
    })
    .await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(2500), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_drops_each_connection_is_redialled_with_backoff() {
    let started = tokio::time::Instant::now();
    let (store, session) = flapping();
    sixth_connection_after_the_backoff(&session, started).await;
    assert_eq!(store.get().await.expect("get"), 0);
}

/// A call that loses its connection asks the session to look again (a nudge), which must not
/// cut short the wait after a connection lost at once.
#[tokio::test(start_paused = true)]
async fn calls_that_lose_their_connection_do_not_cut_the_backoff_short() {
    let started = tokio::time::Instant::now();
    let (store, session) = flapping();
    let calling = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                // Idempotent: sent again on the next connection when one is lost.
                let _ = store.get().await;
                tokio::task::yield_now().await;
            }
        }
    });
    sixth_connection_after_the_backoff(&session, started).await;
    calling.abort();
}

/// A connection lost after it was up for a while, then attempts that fail (the server is down):
/// the call that lost the connection asks the session to look again (a nudge), which must not
/// end the wait after the first failed attempt either. Before, the nudge was kept until that
/// wait and ended it at once.
#[tokio::test(start_paused = true)]
async fn a_call_lost_with_its_connection_does_not_cut_the_wait_after_a_failed_attempt() {
    let lab = Lab::new();
    let mut config = SessionConfig::new();
    config
        .backoff_base(Duration::from_secs(1))
        .backoff_cap(Duration::from_secs(1))
        .jitter(0.0);
    let (store, session) = lab.start(&config, None);
    until(&session, "the connection", |state| {
        connections(state) == Some(1)
    })
    .await;
    // Up for longer than the backoff's cap: its loss is not a quick one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { store.stall_once().await }
    });
    lab.shared.until_started("stall_once", 1).await;
    lab.set(Mode::Down);
    let lost = tokio::time::Instant::now();
    lab.kill();
    // The first attempt comes at once, the second once the first one's wait has passed.
    until(&session, "the second attempt to fail", |state| {
        matches!(state, SessionState::Connecting { attempts: 2.., .. })
    })
    .await;
    let waited = lost.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    stalled.abort();
}

/// "Retry now" ends the wait after a failed attempt, however long it would be.
#[tokio::test(start_paused = true)]
async fn retry_now_ends_the_wait_after_a_failed_attempt() {
    retry_now_ends_a_wait_of(Duration::from_secs(600), 0.0).await;
}

/// A backoff longer than the clock can count (`Duration::MAX`, a way to ask for "retry now"
/// only) waits a year at most, with or without jitter. Before, the session's task panicked
/// computing the wait, and the session stopped for good.
#[tokio::test(start_paused = true)]
async fn a_backoff_too_long_for_the_clock_waits_for_retry_now() {
    retry_now_ends_a_wait_of(Duration::MAX, 0.0).await;
    retry_now_ends_a_wait_of(Duration::MAX, 0.5).await;
}

/// Starts a session whose server is down, with a backoff of `wait`; "retry now" in the wait
/// after the first attempt connects at once.
async fn retry_now_ends_a_wait_of(wait: Duration, jitter: f64) {
    let lab = Lab::new();
    lab.set(Mode::Down);
    let mut config = SessionConfig::new();
    config.backoff_base(wait).backoff_cap(wait).jitter(jitter);
    let started = tokio::time::Instant::now();
    let (store, session) = lab.start(&config, None);
    until(&session, "the wait after the first attempt", |state| {
        matches!(
            state,
            SessionState::Connecting {
                next_attempt: Some(_),
                ..
            }
        )
    })
    .await;
    lab.set(Mode::Up);
    session.retry_now();
    until(&session, "the connection", |state| {
        connections(state) == Some(1)
    })
    .await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(600), "{waited:?}");
    assert_eq!(store.get().await.expect("get"), 0);
}

/// A subscription whose server takes longer than the calls' deadline to open it again after a
/// reconnect is opened again after the session's backoff, which grows: over two seconds with a
/// deadline of 10 ms and a backoff of 100 ms doubling to 1 s, a handful of openings (each
/// starts the server's handler). Before, it was opened again at once, about 200 times.
#[tokio::test(start_paused = true)]
async fn a_stream_slow_to_reopen_is_opened_again_after_the_backoff() {
    use futures_util::StreamExt;
    let lab = Lab::new();
    let mut config = SessionConfig::new();
    config
        .backoff_base(Duration::from_millis(100))
        .backoff_cap(Duration::from_secs(1))
        .jitter(0.0);
    let (store, _session) = lab.start(&config, Some(Duration::from_millis(10)));
    let mut items = store.watch(1).await.expect("opened");
    lab.shared.opens_held.send_replace(true);
    lab.kill();
    let reading = tokio::spawn(async move { items.next().await.map(|item| item.is_ok()) });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = lab
        .shared
        .opened
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    assert!((2..=8).contains(&opened), "opened {opened} times");
    reading.abort();
}
