//! The task of a session: connects, watches the connection, and connects again.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::ClientHandle;
use crate::error::{RpcError, SessionError};
use crate::service::ServiceDescriptor;
use crate::session::{Connect, Current, SessionConfig, SessionState};

pub(super) struct Driver<K> {
    pub(super) connector: K,
    pub(super) config: SessionConfig,
    pub(super) service: &'static ServiceDescriptor,
    pub(super) current: Arc<watch::Sender<Current>>,
    pub(super) state: Arc<watch::Sender<SessionState>>,
    pub(super) nudge: Arc<Notify>,
    /// [`super::Session::retry_now`] only.
    pub(super) retry: Arc<Notify>,
    pub(super) stop: CancellationToken,
}

/// The session was dropped: the task ends.
struct Stopped;

impl<K> Drop for Driver<K> {
    fn drop(&mut self) {
        // The task is gone (the session was dropped, or its runtime shut down): no call waits
        // for a connection that will not come, and whoever watches the state sees it.
        self.current.send_replace(Current::Stopped);
        self.state.send_replace(SessionState::Stopped {
            since: Instant::now(),
        });
    }
}

impl<K: Connect> Driver<K> {
    pub(super) async fn run(self) {
        let mut lost = None;
        let mut connections = 0;
        // Connections in a row lost before the backoff's cap had passed since they came up.
        let mut quick_losses = 0;
        loop {
            let Ok(handle) = self.connect(lost.take(), quick_losses).await else {
                return;
            };
            let up_since = Instant::now();
            connections += 1;
            tracing::debug!(
                service = self.service.name,
                connections,
                "session connected"
            );
            // The connection first, then the state: whoever sees `Connected` finds it usable.
            self.current.send_replace(Current::Up(handle.clone()));
            self.state.send_replace(SessionState::Connected {
                since: Instant::now(),
                connections,
            });
            let Ok(why) = self.watch(&handle).await else {
                return;
            };
            tracing::debug!(service = self.service.name, error = %why, "session lost its connection");
            self.current.send_replace(Current::Waiting(None));
            lost = Some(why);
            // A server that takes each connection and drops it soon after is not redialled in a
            // loop: such a loss counts as a failed attempt for the wait before the next one.
            quick_losses = if up_since.elapsed() < self.config.get_backoff(u32::MAX) {
                quick_losses.saturating_add(1)
            } else {
                0
            };
        }
    }

    /// Connects, retrying with backoff, failing for good when the connector says so. After
    /// `quick_losses` connections lost soon after they came up, the first attempt waits as
    /// after that many failed attempts.
    async fn connect(
        &self,
        lost: Option<RpcError>,
        quick_losses: u32,
    ) -> Result<ClientHandle, Stopped> {
        let mut since = Instant::now();
        let mut attempts = 0;
        let mut last_error = None;
        if quick_losses > 0 {
            let next_attempt = Instant::now() + self.delay(quick_losses);
            // Waiting for "retry now" from before the state that invites it is published, so
            // that a press as soon as it shows is not lost.
            let retry = self.retry.notified();
            tokio::pin!(retry);
            retry.as_mut().enable();
            self.state.send_replace(SessionState::Connecting {
                since,
                lost: lost.clone(),
                attempts,
                last_error: None,
                next_attempt: Some(next_attempt),
            });
            // Not ended by a nudge: the calls that lost the connection give one each (a
            // nudge only makes a connection that is up be looked at again, in `watch`).
            tokio::select! {
                () = self.stop.cancelled() => return Err(Stopped),
                () = tokio::time::sleep_until(next_attempt) => {}
                () = retry => {}
            }
        }
        loop {
            self.state.send_replace(SessionState::Connecting {
                since,
                lost: lost.clone(),
                attempts,
                last_error: last_error.clone(),
                next_attempt: None,
            });
            attempts += 1;
            let attempt = tokio::select! {
                () = self.stop.cancelled() => return Err(Stopped),
                attempt = self.connector.connect(self.service) => attempt,
            };
            let error = match attempt {
                Ok(handle) => return Ok(handle),
                Err(error) => error,
            };
            let permanent = self.connector.is_permanent(&error);
            let error = SessionError::new(error);
            tracing::debug!(service = self.service.name, %error, permanent, "session attempt failed");
            if permanent {
                let mut current = self.current.subscribe();
                self.current.send_replace(Current::Failed(error.clone()));
                self.state.send_replace(SessionState::Failed {
                    since: Instant::now(),
                    error: error.clone(),
                });
                // Only "retry now" ends a failure: it alone takes the session out of `Failed`.
                // (A nudge would not do: one left by a call that lost its connection before
                // the failure would start the session again at once.)
                tokio::select! {
                    () = self.stop.cancelled() => return Err(Stopped),
                    _ = current.wait_for(|current| !matches!(current, Current::Failed(_))) => {}
                }
                since = Instant::now();
                attempts = 0;
            } else {
                // The backoff goes on growing from the connections lost at once before.
                let next_attempt =
                    Instant::now() + self.delay(attempts.saturating_add(quick_losses));
                // As above: registered before the state that invites a press is published.
                let retry = self.retry.notified();
                tokio::pin!(retry);
                retry.as_mut().enable();
                self.current
                    .send_replace(Current::Waiting(Some(error.clone())));
                self.state.send_replace(SessionState::Connecting {
                    since,
                    lost: lost.clone(),
                    attempts,
                    last_error: Some(error.clone()),
                    next_attempt: Some(next_attempt),
                });
                tokio::select! {
                    () = self.stop.cancelled() => return Err(Stopped),
                    () = tokio::time::sleep_until(next_attempt) => {}
                    // Not a nudge: one left by a call that lost the connection before this
                    // wait began would end it at once.
                    () = retry => {}
                }
            }
            last_error = Some(error);
        }
    }

    /// Waits until the connection ends or its server says it is shutting down; returns why.
    /// A server shutting down still answers the calls in flight on the connection (their
    /// handles keep it), while the session connects again at once, to the server that takes
    /// its place.
    async fn watch(&self, handle: &ClientHandle) -> Result<RpcError, Stopped> {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Err(Stopped),
                why = handle.ended() => return Ok(why),
                () = handle.shutting_down() => {
                    // It also returns when the connection closed without a word.
                    if handle.is_shutting_down() {
                        return Ok(RpcError::ShuttingDown);
                    }
                    return Ok(handle.ended().await);
                }
                // A call that saw the shutdown nudges; the nudge is taken here so that it does
                // not end the backoff of the attempts that follow.
                () = self.nudge.notified() => {
                    if handle.is_shutting_down() {
                        return Ok(RpcError::ShuttingDown);
                    }
                }
            }
        }
    }

    /// The wait after failed attempt `attempt`, jitter included.
    fn delay(&self, attempt: u32) -> Duration {
        let full = self.config.get_backoff(attempt);
        // A random fraction in [0, 1) from the standard library's randomly keyed hasher.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(1.0 - self.config.get_jitter() * fraction)
    }
}
