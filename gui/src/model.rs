//! What the window shows, kept up to date by tasks on the runtime: the daemon's status through
//! a watch opened over the session, and the outcome of the last action.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::session::{Session, SessionState};
use rpc_core::RpcError;

use crate::service::{SessionDaemonClient, Status};

/// What the window shows besides the session's state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Shown {
    /// The daemon's latest status.
    pub(crate) status: Option<Status>,
    /// Gaps in the watch: each reconnect reopens it and the status is fetched again.
    pub(crate) gaps: u32,
    /// What the last action gave.
    pub(crate) last_action: Option<String>,
}

/// The shared model: tasks write, the window reads.
#[derive(Clone, Default)]
pub(crate) struct Model(Arc<Mutex<Shown>>);

impl Model {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shown> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Watches the daemon's status for as long as the window lives: a stream opened through the
/// session, which reopens it after each reconnect. At each gap, the status is fetched again.
pub(crate) async fn watch_status(
    client: SessionDaemonClient,
    session: Session,
    model: Model,
    repaint: impl Fn() + Send + 'static,
) {
    loop {
        let mut items = match client.watch(100).await {
            Ok(items) => items,
            Err(error) => {
                model.lock().last_action = Some(format!("watch: {error}"));
                repaint();
                pause_before_reopening(&session).await;
                continue;
            }
        };
        while let Some(item) = items.next().await {
            match item {
                Ok(status) => model.lock().status = Some(status),
                Err(RpcError::StreamReopened) => {
                    model.lock().gaps += 1;
                    // What changed during the gap: fetch the status now.
                    if let Ok(status) = client.status().await {
                        model.lock().status = Some(status);
                    }
                }
                Err(error) => {
                    model.lock().last_action = Some(format!("watch ended: {error}"));
                    break;
                }
            }
            repaint();
        }
        repaint();
        pause_before_reopening(&session).await;
    }
}

/// How long the watch waits before it is opened again while the session stays as it is.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// Before the watch is opened again (it failed to open, or ended with an error the session
/// did not reopen it after): waits until the session's state changes or a second has passed,
/// so that a daemon that refuses the watch at once (a version whose `watch` this window cannot
/// call) is not asked in a loop, then until the session is connected, or, if it failed, until
/// it is retried.
async fn pause_before_reopening(session: &Session) {
    let mut state = session.watch();
    state.borrow_and_update();
    let _ = tokio::time::timeout(REOPEN_AFTER, state.changed()).await;
    if session.connected().await.is_err() {
        wait_for_retry(session).await;
    }
}

/// Waits until the session leaves the failed state ("retry now").
async fn wait_for_retry(session: &Session) {
    let mut state = session.watch();
    let _ = state
        .wait_for(|state| !matches!(state, SessionState::Failed { .. }))
        .await;
}

/// Repaints whenever the session's state changes, and every 100 ms while it is connecting (the
/// window shows for how long); a failed session waits for "retry now", with nothing to redraw.
pub(crate) async fn repaint_on_change(session: Session, repaint: impl Fn() + Send + 'static) {
    let mut state = session.watch();
    loop {
        let connecting = matches!(*state.borrow_and_update(), SessionState::Connecting { .. });
        repaint();
        if connecting {
            let _ = tokio::time::timeout(Duration::from_millis(100), state.changed()).await;
        } else if state.changed().await.is_err() {
            return;
        }
    }
}

/// Runs a job of `ms` on the daemon and shows what came back.
pub(crate) async fn run_job(
    client: SessionDaemonClient,
    model: Model,
    ms: u64,
    repaint: impl Fn() + Send + 'static,
) {
    let shown = match client.run_job(ms).await {
        Ok(done) => format!("job done ({done} so far)"),
        Err(error) => format!("job failed: {error}"),
    };
    model.lock().last_action = Some(shown);
    repaint();
}

/// The session's state in a few words, without times: what the report prints.
pub(crate) fn state_words(state: &SessionState) -> String {
    match state {
        SessionState::Connected { connections, .. } => format!("connected {connections}"),
        SessionState::Connecting { lost: None, .. } => "connecting".to_owned(),
        SessionState::Connecting { .. } => "reconnecting".to_owned(),
        SessionState::Failed { .. } => "failed".to_owned(),
        SessionState::Stopped { .. } => "stopped".to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// An error and each of its causes, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
