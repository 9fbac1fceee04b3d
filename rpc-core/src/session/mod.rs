//! Sessions: a client that outlives its server's restarts.
//!
//! A session keeps a typed client connected to a service. When its connection is lost it
//! connects again, with exponential backoff (base, cap and jitter in [`SessionConfig`]), runs
//! the handshake again, and carries on. The typed client made with it is the same
//! `<Trait>Client` as over a plain connection; its calls go through the session:
//!
//! * **Calls in flight when the connection is lost** fail at once with
//!   [`RpcError::ConnectionLost`], which says whether the call may have run on the server.
//! * **Calls made while the session is reconnecting** wait for it within their own deadline,
//!   then fail with [`RpcError::Disconnected`] (not sent); none is lost silently.
//! * **Methods marked `#[rpc(idempotent)]`** are sent again on the new connection, within the
//!   call's deadline, when the connection was lost during the call. Other methods are sent at
//!   most once.
//! * **Subscriptions**, streams opened through the session by methods marked
//!   `#[rpc(idempotent)]` that return [`crate::Stream`], are opened again with the same
//!   arguments once the session is back; the receiver yields one [`RpcError::StreamReopened`]
//!   item at the gap, then the reopened stream's items. Other streams end with their
//!   connection (opening them again would run their handler again: a job's progress).
//! * **A server that cannot be the right one** (it rejects the handshake: another service,
//!   another protocol version, other callbacks) is not retried: the session goes to [`SessionState::Failed`] and calls
//!   fail with [`RpcError::SessionFailed`], until [`Session::retry_now`].
//!
//! The state ([`SessionState`]) is a [`tokio::sync::watch`] channel: a GUI awaits its changes
//! or reads it when it draws. How to connect is a [`Connect`]: `rpc-transport` has one for
//! named endpoints (`rpc_transport::session`).
//!
//! The session's task stops, and its connection closes, when the last typed client made with it,
//! the last [`Session`] and the last of its streams that it reopens are dropped.

mod driver;
mod link;
mod resume;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::{Client, ClientConfig, ClientHandle};
use crate::error::{RpcError, SessionError};
use crate::service::ServiceDescriptor;

pub use link::Link;
pub(crate) use resume::{poll_next as poll_stream, Resume};

/// How a session connects: one attempt at a new connection, handshake included.
pub trait Connect: Send + Sync + 'static {
    /// Why an attempt failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Connects once for `service` and returns the connected handle.
    fn connect(
        &self,
        service: &'static ServiceDescriptor,
    ) -> impl Future<Output = Result<ClientHandle, Self::Error>> + Send;

    /// Whether retrying cannot fix `error` (the server serves another interface): the session
    /// then fails instead of trying again.
    fn is_permanent(&self, error: &Self::Error) -> bool;
}

/// The longest wait a session's backoff can be set to: a year, within what the clock counts.
const MAX_BACKOFF: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The backoff of a session's attempts to connect.
///
/// After a connection is lost the first attempt is made at once, unless the connection was
/// lost before `cap` had passed since it came up: then the lost connection counts as a failed
/// attempt (and as many as were lost so in a row), so that a server that takes each connection
/// and drops it is not redialled in a loop. Attempt `n` that fails is
/// followed by a wait of `min(cap, base * 2^(n-1))`, shortened by a random fraction of up to
/// `jitter` of itself, so that many clients of one restarted server do not retry in step.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    base: Duration,
    cap: Duration,
    jitter: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            jitter: 0.25,
        }
    }
}

impl SessionConfig {
    /// The defaults: base 50 ms, cap 2 s, jitter 0.25.
    pub fn new() -> Self {
        Self::default()
    }

    /// The wait after the first failed attempt; at least a millisecond (a server that is down
    /// is never redialled in a loop without a pause), at most a year (a longer one, such as
    /// `Duration::MAX`, leaves the next attempt to [`Session::retry_now`] as well).
    pub fn backoff_base(&mut self, base: Duration) -> &mut Self {
        self.base = base.clamp(Duration::from_millis(1), MAX_BACKOFF);
        self
    }

    /// The longest wait between attempts; at least a millisecond, at most a year.
    pub fn backoff_cap(&mut self, cap: Duration) -> &mut Self {
        self.cap = cap.clamp(Duration::from_millis(1), MAX_BACKOFF);
        self
    }

    /// The largest fraction of a wait taken off at random, clamped to `0.0..=1.0`.
    pub fn jitter(&mut self, jitter: f64) -> &mut Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The wait after failed attempt `attempt` (from 1), before jitter.
    pub fn get_backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The largest fraction of a wait taken off at random.
    pub fn get_jitter(&self) -> f64 {
        self.jitter
    }
}

/// Where a session is: what a GUI shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionState {
    /// Not connected, trying to: the first connection, or again after one was lost. A session
    /// whose server says it is shutting down is here at once, with `lost` set to
    /// [`RpcError::ShuttingDown`], while the calls in flight on that connection still finish.
    Connecting {
        /// Since when the session has had no connection.
        since: Instant,
        /// Why the last connection was lost; `None` before the first one.
        lost: Option<RpcError>,
        /// Attempts made since then.
        attempts: u32,
        /// Why the last attempt failed.
        last_error: Option<SessionError>,
        /// When the next attempt starts, if one is waiting out its backoff.
        next_attempt: Option<Instant>,
    },
    /// Connected, the handshake done.
    Connected {
        /// Since when.
        since: Instant,
        /// Connections made so far by this session, this one included.
        connections: u64,
    },
    /// The server refused this client for a reason that retrying cannot fix; the session makes
    /// no more attempts until [`Session::retry_now`].
    Failed {
        /// Since when.
        since: Instant,
        /// Why.
        error: SessionError,
    },
    /// The session's task has ended (its runtime shut down, or every typed client and
    /// [`Session`] of it was dropped): it makes no more attempts, and calls fail with
    /// [`RpcError::ConnectionClosed`].
    Stopped {
        /// Since when.
        since: Instant,
    },
}

impl SessionState {
    /// Whether the session is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, SessionState::Connected { .. })
    }
}

/// What the calls of a session see of it.
#[derive(Clone)]
pub(crate) enum Current {
    /// No connection; the last connect error, if any.
    Waiting(Option<SessionError>),
    Up(ClientHandle),
    Failed(SessionError),
    /// The session's task has ended with its runtime.
    Stopped,
}

/// What the typed clients and the [`Session`]s of one session share with its task.
pub(crate) struct Hub {
    pub(crate) service: &'static ServiceDescriptor,
    pub(crate) current: watch::Receiver<Current>,
    /// Shared with the session's task, so that "retry now" leaves the failed state at once.
    current_tx: Arc<watch::Sender<Current>>,
    state: Arc<watch::Sender<SessionState>>,
    /// Look at the connection again (a call saw it go or shut down); only a connection that
    /// is up is looked at again, so a nudge never ends a wait of the backoff.
    pub(crate) nudge: Arc<Notify>,
    /// Retry now, from the user only ([`Session::retry_now`]): it alone ends a wait of the
    /// backoff, which calls that lost the connection would otherwise end.
    retry: Arc<Notify>,
    /// The session's backoff, also between openings of a stream that take too long.
    pub(crate) backoff: SessionConfig,
    /// Stops the session's task when the last client and [`Session`] are gone.
    _stop: DropGuard,
}

/// The control of a session: its state, and "retry now". Cheap to clone.
#[derive(Clone)]
pub struct Session {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("service", &self.hub.service.name)
            .field("state", &*self.hub.state.borrow())
            .finish()
    }
}

impl Session {
    /// Starts a session for client `C` that connects with `connector`: returns at once, in
    /// [`SessionState::Connecting`], with the typed client and the session's control. Calls
    /// made before the first connection wait for it within their deadline. Must run inside a
    /// tokio runtime, which drives the session.
    ///
    /// `client` gives the calls' default deadline; the connector uses its own settings.
    pub fn start<C: Client, K: Connect>(
        connector: K,
        client: &ClientConfig,
        config: &SessionConfig,
    ) -> (C, Session) {
        let stop = CancellationToken::new();
        let nudge = Arc::new(Notify::new());
        let retry = Arc::new(Notify::new());
        let (current_tx, current) = watch::channel(Current::Waiting(None));
        let current_tx = Arc::new(current_tx);
        let (state, _) = watch::channel(SessionState::Connecting {
            since: Instant::now(),
            lost: None,
            attempts: 0,
            last_error: None,
            next_attempt: None,
        });
        let state = Arc::new(state);
        let driver = driver::Driver {
            connector,
            config: config.clone(),
            service: C::SERVICE,
            current: Arc::clone(&current_tx),
            state: Arc::clone(&state),
            nudge: Arc::clone(&nudge),
            retry: Arc::clone(&retry),
            stop: stop.clone(),
        };
        tokio::spawn(driver.run());
        let hub = Arc::new(Hub {
            service: C::SERVICE,
            current,
            current_tx,
            state,
            nudge,
            retry,
            backoff: config.clone(),
            _stop: stop.drop_guard(),
        });
        let link = Link::session(Arc::clone(&hub), client.get_default_timeout());
        (C::from_handle(link), Session { hub })
    }

    /// The state now.
    pub fn state(&self) -> SessionState {
        self.hub.state.borrow().clone()
    }

    /// The state as a watch channel: `changed().await` wakes once the state has changed, and
    /// the receiver then sees the latest state (a state that lasted only between two looks,
    /// such as a brief `Connected` between two quick losses, may be missed).
    pub fn watch(&self) -> watch::Receiver<SessionState> {
        self.hub.state.subscribe()
    }

    /// Tries to connect now: ends the wait of the backoff, or starts again after a failure.
    /// Does nothing while connected, or while an attempt is under way (its outcome decides
    /// what follows: a wait of the backoff, which a later call ends).
    pub fn retry_now(&self) {
        let now = Instant::now();
        // Only a failed session waits again, and only while it is failed: not one whose task
        // has ended (its runtime shut down; its calls must keep failing at once), nor one that
        // connected meanwhile.
        let failed = self
            .hub
            .current_tx
            .send_if_modified(|current| match current {
                Current::Failed(_) => {
                    *current = Current::Waiting(None);
                    true
                }
                _ => false,
            });
        if failed {
            // Unless the task has already tried again and failed anew (it set `current` to
            // `Failed` before its state): the failed state it sets, or has set, stays.
            self.hub.state.send_if_modified(|state| match state {
                SessionState::Failed { error, .. }
                    if !matches!(*self.hub.current_tx.borrow(), Current::Failed(_)) =>
                {
                    *state = SessionState::Connecting {
                        since: now,
                        lost: None,
                        attempts: 0,
                        last_error: Some(error.clone()),
                        next_attempt: None,
                    };
                    true
                }
                _ => false,
            });
        }
        // Only a wait under way: a press while connected, or during an attempt, leaves nothing
        // for later.
        self.hub.retry.notify_waiters();
    }

    /// Waits until the session is connected.
    ///
    /// # Errors
    ///
    /// [`RpcError::SessionFailed`] if it fails instead; [`RpcError::ConnectionClosed`] if the
    /// session's task has ended (its runtime shut down).
    pub async fn connected(&self) -> Result<(), RpcError> {
        let mut state = self.hub.state.subscribe();
        let mut current = self.hub.current_tx.subscribe();
        // The state, which the task sets once the connection (or the failure) is in place,
        // unless the task has ended: its state says no more.
        tokio::select! {
            biased;
            _ = current.wait_for(|current| matches!(current, Current::Stopped)) => {
                Err(RpcError::ConnectionClosed)
            }
            settled = state.wait_for(|state| !matches!(state, SessionState::Connecting { .. })) => {
                match &*settled.map_err(|_| RpcError::ConnectionClosed)? {
                    SessionState::Failed { error, .. } => Err(RpcError::SessionFailed(error.clone())),
                    SessionState::Stopped { .. } => Err(RpcError::ConnectionClosed),
                    _ => Ok(()),
                }
            }
        }
    }
}
