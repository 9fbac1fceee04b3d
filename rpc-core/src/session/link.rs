//! What a typed client calls through: one connection, or a session.
//!
//! A call through a session runs in a future of its own on the heap: its reconnecting and
//! retrying make it several times larger than a direct call, and a future's size is that of
//! its largest branch, so inline it would make every call's future as large, direct ones too
//! (680 bytes instead of under 300 for `add(i64, i64)`), and callers move and copy those.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{ClientHandle, StreamReceiver};
use crate::error::RpcError;
use crate::protocol::WireError;
use crate::service::{MethodDescriptor, ServiceDescriptor};
use crate::session::{resume, Current, Hub};
use crate::Stream;

/// What a typed client calls through: a [`ClientHandle`] (one connection) or a session
/// ([`crate::session`]), with the deadline of its calls. Generated clients hold one; its
/// methods are those of [`ClientHandle`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Direct(ClientHandle),
    Session(SessionLink),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct(handle) => handle.fmt(f),
            Route::Session(session) => f
                .debug_struct("Session")
                .field("service", &session.hub.service.name)
                .field("timeout", &session.timeout)
                .finish_non_exhaustive(),
        }
    }
}

/// The calls of a session: the hub, and the deadline of each call.
#[derive(Clone)]
pub(super) struct SessionLink {
    pub(super) hub: Arc<Hub>,
    pub(super) timeout: Option<Duration>,
}

impl From<ClientHandle> for Link {
    fn from(handle: ClientHandle) -> Self {
        Self {
            route: Route::Direct(handle),
        }
    }
}

impl Link {
    pub(super) fn session(hub: Arc<Hub>, timeout: Option<Duration>) -> Self {
        Self {
            route: Route::Session(SessionLink { hub, timeout }),
        }
    }

    /// The connection's handle, for a link that is one connection; `None` for a session.
    pub fn connection(&self) -> Option<&ClientHandle> {
        match &self.route {
            Route::Direct(handle) => Some(handle),
            Route::Session(_) => None,
        }
    }

    /// A link to the same connection or session whose calls have deadline `timeout` from
    /// their start (`None`: no deadline).
    #[must_use]
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        let route = match &self.route {
            Route::Direct(handle) => Route::Direct(handle.with_timeout(timeout)),
            Route::Session(session) => Route::Session(SessionLink {
                hub: Arc::clone(&session.hub),
                timeout,
            }),
        };
        Self { route }
    }

    /// The deadline given to calls made through this link.
    pub fn timeout(&self) -> Option<Duration> {
        match &self.route {
            Route::Direct(handle) => handle.timeout(),
            Route::Session(session) => session.timeout,
        }
    }

    /// The service this link calls.
    pub fn service(&self) -> &'static ServiceDescriptor {
        match &self.route {
            Route::Direct(handle) => handle.service(),
            Route::Session(session) => session.hub.service,
        }
    }

    /// How the method named `method` binds to the server's (see
    /// [`ClientHandle::binding`]); through a session, to the server it is connected to now,
    /// and `None` while it is not connected.
    pub fn binding(&self, method: &str) -> Option<crate::MethodBinding> {
        match &self.route {
            Route::Direct(handle) => handle.binding(method),
            Route::Session(session) => match &*session.hub.current.borrow() {
                Current::Up(handle) => handle.binding(method),
                _ => None,
            },
        }
    }

    /// Whether the server has the method named `method` with the same shapes (see
    /// [`ClientHandle::supports`]); through a session, the server it is connected to now.
    pub fn supports(&self, method: &str) -> bool {
        self.binding(method) == Some(crate::MethodBinding::Bound)
    }

    /// Whether every call would fail: the connection is closed, or the session has failed.
    /// A session that is reconnecting is not closed.
    pub fn is_closed(&self) -> bool {
        match &self.route {
            Route::Direct(handle) => handle.is_closed(),
            Route::Session(session) => {
                matches!(
                    *session.hub.current.borrow(),
                    Current::Failed(_) | Current::Stopped
                )
            }
        }
    }

    /// As [`ClientHandle::call`]; through a session, see [`crate::session`].
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call`]; through a session also [`RpcError::ConnectionLost`],
    /// [`RpcError::Disconnected`] and [`RpcError::SessionFailed`].
    pub async fn call<A, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<T, RpcError>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        match &self.route {
            Route::Direct(handle) => handle.call(method, args).await,
            Route::Session(session) => {
                Box::pin(session.run(
                    method,
                    |handle| async move { handle.call(method, args).await },
                ))
                .await
            }
        }
    }

    /// As [`ClientHandle::call_fallible`]; through a session, see [`crate::session`].
    ///
    /// # Errors
    ///
    /// As [`Link::call`].
    pub async fn call_fallible<A, T, E>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<Result<T, E>, RpcError>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match &self.route {
            Route::Direct(handle) => handle.call_fallible(method, args).await,
            Route::Session(session) => {
                Box::pin(session.run(method, |handle| async move {
                    handle.call_fallible(method, args).await
                }))
                .await
            }
        }
    }

    /// As [`ClientHandle::notify`]. Through a session, a one-way call waits for a connection
    /// within its deadline and is written to it once; if that connection is lost before the
    /// server read it, nothing says so (a one-way call has no answer).
    ///
    /// # Errors
    ///
    /// As [`Link::call`].
    pub async fn notify<A>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<(), RpcError>
    where
        A: Serialize + ?Sized,
    {
        match &self.route {
            Route::Direct(handle) => handle.notify(method, args).await,
            Route::Session(session) => {
                Box::pin(session.run(
                    method,
                    |handle| async move { handle.notify(method, args).await },
                ))
                .await
            }
        }
    }

    /// As [`ClientHandle::open_stream`]. Through a session, the stream of a method marked
    /// `#[rpc(idempotent)]` is opened again with the same arguments after a reconnect; any
    /// other ends with `ConnectionLost` (see [`crate::session`]).
    ///
    /// # Errors
    ///
    /// As [`Link::call`], for opening the stream.
    pub async fn open_stream<A, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<StreamReceiver<T>, RpcError>
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        match &self.route {
            Route::Direct(handle) => handle.open_stream(method, args).await,
            Route::Session(session) => Box::pin(resume::open(session, method, args)).await,
        }
    }

    /// As [`ClientHandle::call_uploading`]. Through a session the call is sent once: its
    /// stream cannot be sent again.
    ///
    /// # Errors
    ///
    /// As [`Link::call`].
    pub async fn call_uploading<A, I, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<T, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
    {
        match &self.route {
            Route::Direct(handle) => handle.call_uploading(method, args, upload).await,
            Route::Session(session) => {
                let handle = session.for_upload(method).await?;
                lost_once(&handle, handle.call_uploading(method, args, upload).await)
            }
        }
    }

    /// As [`ClientHandle::call_fallible_uploading`]; see [`Link::call_uploading`].
    ///
    /// # Errors
    ///
    /// As [`Link::call`].
    pub async fn call_fallible_uploading<A, I, T, E>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<Result<T, E>, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match &self.route {
            Route::Direct(handle) => handle.call_fallible_uploading(method, args, upload).await,
            Route::Session(session) => {
                let handle = session.for_upload(method).await?;
                lost_once(
                    &handle,
                    handle.call_fallible_uploading(method, args, upload).await,
                )
            }
        }
    }

    /// As [`ClientHandle::open_stream_uploading`]; through a session the stream is not
    /// opened again after a reconnect: it ends with the connection, with
    /// [`RpcError::ConnectionLost`].
    ///
    /// # Errors
    ///
    /// As [`Link::call`].
    pub async fn open_stream_uploading<A, I, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<StreamReceiver<T>, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
    {
        match &self.route {
            Route::Direct(handle) => handle.open_stream_uploading(method, args, upload).await,
            Route::Session(session) => {
                let handle = session.for_upload(method).await?;
                let mut receiver = lost_once(
                    &handle,
                    handle.open_stream_uploading(method, args, upload).await,
                )?;
                // Its upload is gone with the connection: it ends with it, as `ConnectionLost`.
                receiver.resume = Some(resume::Resume::never());
                Ok(receiver)
            }
        }
    }
}

/// A call through a session on `handle` that is sent once: a lost connection is reported as
/// such (a protocol error or a refusal on a connection that is still open is the call's own).
fn lost_once<T>(handle: &ClientHandle, outcome: Result<T, RpcError>) -> Result<T, RpcError> {
    outcome.map_err(|error| match lost_on(&error, handle) {
        Some(may_have_run) => RpcError::ConnectionLost {
            may_have_run,
            cause: Box::new(error),
        },
        None => error,
    })
}

/// Whether `error` means the call's connection is gone, and if so whether the server may have
/// run the call; `None` for every other error (the call's own outcome).
pub(super) fn connection_lost(error: &RpcError) -> Option<bool> {
    match error {
        // The server took no new call: it said so before this one went out, or refused it.
        RpcError::ShuttingDown | RpcError::Remote(WireError::ShuttingDown) => Some(false),
        // The server stopped it half-way as it shut down.
        RpcError::Remote(WireError::Stopped)
        | RpcError::ConnectionClosed
        | RpcError::ClosedByPeer(_)
        | RpcError::PeerExited(_)
        | RpcError::Frame(_)
        | RpcError::Protocol(_) => Some(true),
        _ => None,
    }
}

/// As [`connection_lost`], for an error of a call made on `handle`: a protocol error that left
/// the connection open (a reply of the wrong kind), or a server's shutdown failure on a
/// connection whose server has not said goodbye (a server sends its goodbye before them), was
/// the call's own, not a lost connection, which a call waiting for the next connection would
/// wait on in vain.
pub(super) fn lost_on(error: &RpcError, handle: &ClientHandle) -> Option<bool> {
    connection_lost(error).filter(|_| match error {
        RpcError::Protocol(_) => handle.is_closed(),
        RpcError::Remote(_) => handle.is_shutting_down() || handle.is_closed(),
        _ => true,
    })
}

/// Whether `error` refused a call on its connection before anything was sent.
fn refused_unsent(error: &RpcError) -> bool {
    matches!(
        error,
        RpcError::UnknownMethod { .. }
            | RpcError::Incompatible { .. }
            | RpcError::RequestTooLarge { .. }
            | RpcError::Encode(_)
    )
}

/// The time left until `deadline`, as a call's timeout.
pub(super) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

impl SessionLink {
    /// The connection a call with a stream from the client goes out on, once the session has
    /// one (within the call's deadline). A connection already closed, or whose server said it
    /// is shutting down, is passed over as [`SessionLink::run`] does: the call waits for the
    /// next one.
    async fn for_upload(
        &self,
        method: &'static MethodDescriptor,
    ) -> Result<ClientHandle, RpcError> {
        let deadline = self.deadline();
        let mut lost: Option<ClientHandle> = None;
        loop {
            let handle = self.connected(deadline, lost.as_ref()).await?;
            if handle.is_closed() || handle.is_shutting_down() {
                lost = Some(handle);
                continue;
            }
            tracing::trace!(method = method.name, "session call with a stream");
            return Ok(handle.with_timeout(remaining(deadline)));
        }
    }

    /// When a call made now must end.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| Instant::now().checked_add(t))
    }

    /// A connection, once the session has one other than `not` (a connection a call just
    /// lost), waiting up to `deadline`.
    pub(super) async fn connected(
        &self,
        deadline: Option<Instant>,
        not: Option<&ClientHandle>,
    ) -> Result<ClientHandle, RpcError> {
        if not.is_some() {
            // A call saw the connection go (perhaps before the session did): look again.
            self.hub.nudge.notify_one();
        }
        let mut current = self.hub.current.clone();
        let usable = |current: &Current| match current {
            Current::Up(handle) => not.is_none_or(|lost| !lost.same_connection(handle)),
            Current::Failed(_) | Current::Stopped => true,
            Current::Waiting(_) => false,
        };
        let waited = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, current.wait_for(usable))
                .await
                .map(|found| found.map(|found| found.clone()))
                .map_err(|_| ()),
            None => Ok(current.wait_for(usable).await.map(|found| found.clone())),
        };
        let found = match waited {
            Ok(Ok(found)) => found,
            // The session's task is gone (its runtime shut down).
            Ok(Err(_)) => return Err(RpcError::ConnectionClosed),
            // The deadline passed while the session had no connection: a connection that came
            // back just then is too late for the call, which was never sent.
            Err(()) => match &*current.borrow() {
                Current::Up(_) => return Err(RpcError::Disconnected(None)),
                other => other.clone(),
            },
        };
        match found {
            Current::Up(handle) if usable(&Current::Up(handle.clone())) => Ok(handle),
            Current::Failed(error) => Err(RpcError::SessionFailed(error)),
            Current::Waiting(last) => Err(RpcError::Disconnected(last)),
            Current::Stopped => Err(RpcError::ConnectionClosed),
            Current::Up(_) => Err(RpcError::Disconnected(None)),
        }
    }

    /// Runs a call through the session: waits for a connection within the deadline, makes the
    /// call on it, and sends it again on the next connection if it was lost and the method is
    /// idempotent (or the call never left).
    pub(super) async fn run<T, F, Fut>(
        &self,
        method: &'static MethodDescriptor,
        call: F,
    ) -> Result<T, RpcError>
    where
        F: Fn(ClientHandle) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let deadline = self.deadline();
        let mut lost: Option<ClientHandle> = None;
        // A connection lost during the call: whether it may have run, and how it was lost.
        let mut loss: Option<(bool, RpcError)> = None;
        loop {
            let handle = match self.connected(deadline, lost.as_ref()).await {
                Ok(handle) => handle,
                // Sent and lost, then no connection came back in time, or the session failed
                // or stopped: the call may have run.
                Err(_) if loss.is_some() => {
                    let (may_have_run, cause) = loss.unwrap_or((true, RpcError::ConnectionClosed));
                    return Err(RpcError::ConnectionLost {
                        may_have_run,
                        cause: Box::new(cause),
                    });
                }
                Err(error) => return Err(error),
            };
            if handle.is_closed() || handle.is_shutting_down() {
                // Gone before the call went out: wait for the next connection.
                lost = Some(handle);
                continue;
            }
            let error = match call(handle.with_timeout(remaining(deadline))).await {
                Err(error) => error,
                done => return done,
            };
            let Some(may_have_run) = lost_on(&error, &handle) else {
                return Err(match loss {
                    // Refused here before it was sent (the server that came back serves another
                    // version without the method, or takes smaller frames): as it was, lost on a
                    // connection where it may have run.
                    Some((may_have_run, cause)) if refused_unsent(&error) => {
                        RpcError::ConnectionLost {
                            may_have_run,
                            cause: Box::new(cause),
                        }
                    }
                    _ => error,
                });
            };
            let never_sent = matches!(error, RpcError::ShuttingDown);
            let may_have_run = may_have_run || loss.as_ref().is_some_and(|(may, _)| *may);
            if !(never_sent || method.idempotent) {
                return Err(RpcError::ConnectionLost {
                    may_have_run,
                    cause: Box::new(error),
                });
            }
            tracing::debug!(method = method.name, %error, "connection lost; the call waits for the next");
            if !never_sent {
                loss = Some((may_have_run, error));
            }
            lost = Some(handle);
        }
    }
}
