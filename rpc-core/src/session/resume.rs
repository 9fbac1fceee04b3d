//! Streams opened through a session: opened again, with the same arguments, after a reconnect.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{ClientHandle, StreamReceiver};
use crate::decode::{self, DecodeLimits};
use crate::error::RpcError;
use crate::service::MethodDescriptor;
use crate::session::link::{lost_on, SessionLink};

type Opening<T> = Pin<Box<dyn Future<Output = Result<StreamReceiver<T>, RpcError>> + Send>>;

/// How a stream of a session is opened again, and the opening under way.
pub(crate) struct Resume<T> {
    /// `None` for a stream of a method that is not idempotent: it is not opened again, and
    /// ends with its connection's loss as a call does, `ConnectionLost`.
    reopen: Option<Box<dyn Fn() -> Opening<T> + Send + Sync>>,
    /// In a mutex only so that the receiver stays `Sync`; reached through `get_mut`.
    opening: Mutex<Option<Opening<T>>>,
}

impl<T> Resume<T> {
    /// For a stream that is not opened again: it ends with its connection, as a call is sent at
    /// most once, with `ConnectionLost`.
    pub(super) fn never() -> Box<Self> {
        Box::new(Self {
            reopen: None,
            opening: Mutex::new(None),
        })
    }
}

/// Opens a stream through the session; if its method is idempotent, the receiver opens it again
/// after a reconnect.
pub(super) async fn open<A, T>(
    session: &SessionLink,
    method: &'static MethodDescriptor,
    args: &A,
) -> Result<StreamReceiver<T>, RpcError>
where
    A: Serialize + DeserializeOwned + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'static,
{
    let mut receiver = session
        .run(method, |handle| async move {
            handle.open_stream::<A, T>(method, args).await
        })
        .await?;
    let not_reopened = Resume::never;
    if !method.idempotent {
        // Opening it again would run its handler again: a stream that is not a subscription (a
        // job's progress).
        receiver.resume = Some(not_reopened());
        return Ok(receiver);
    }
    // The arguments are kept as a value of their own, through their encoding (they need not be
    // `Clone`, and the server decodes them anyway).
    let kept = postcard::to_allocvec(args)
        .ok()
        .and_then(|bytes| decode::from_slice::<A>(&bytes, &DecodeLimits::default()).ok());
    let Some(args) = kept.map(Arc::new) else {
        tracing::warn!(
            method = method.name,
            "arguments do not decode as they encode; the stream will not be reopened"
        );
        receiver.resume = Some(not_reopened());
        return Ok(receiver);
    };
    let session = session.clone();
    receiver.resume = Some(Box::new(Resume {
        reopen: Some(Box::new(move || {
            let (session, args) = (session.clone(), Arc::clone(&args));
            Box::pin(async move { reopen::<A, T>(&session, method, &args).await })
        })),
        opening: Mutex::new(None),
    }));
    Ok(receiver)
}

/// The longest wait between two openings of a stream that took too long: the session's
/// backoff may be set far longer (to leave its attempts to `retry_now`), which does nothing
/// while connected.
const MAX_REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the stream again once the session has a connection, for as long as it takes: a
/// subscription waits for its server. An opening that outlasts the session's deadline (a
/// server still starting) is tried again after the session's backoff (at most
/// [`MAX_REOPEN_WAIT`]), which grows with each such opening on one connection (each one started
/// the server's handler); another connection is tried at once. Ends only if the session fails, or the server refuses.
async fn reopen<A, T>(
    session: &SessionLink,
    method: &'static MethodDescriptor,
    args: &A,
) -> Result<StreamReceiver<T>, RpcError>
where
    A: Serialize + ?Sized,
    T: DeserializeOwned,
{
    let mut lost: Option<ClientHandle> = None;
    let mut too_long = 0u32;
    loop {
        let handle = session.connected(None, lost.as_ref()).await?;
        // From before the opening: a connection that changes while it is under way is seen.
        let mut current = session.hub.current.clone();
        current.mark_unchanged();
        match handle
            .with_timeout(session.timeout)
            .open_stream::<A, T>(method, args)
            .await
        {
            Err(error) if lost_on(&error, &handle).is_some() => {
                lost = Some(handle);
                too_long = 0;
            }
            Err(RpcError::DeadlineExceeded) => {
                too_long = too_long.saturating_add(1);
                let wait = session
                    .hub
                    .backoff
                    .get_backoff(too_long)
                    .min(MAX_REOPEN_WAIT);
                tracing::debug!(
                    method = method.name,
                    ?wait,
                    "reopening took too long; trying again"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // Another connection (or the session's end) is tried at once.
                    _ = current.changed() => too_long = 0,
                }
            }
            opened => return opened,
        }
    }
}

/// The next item of a stream of a session: the stream's own items; at a lost connection,
/// nothing until the stream is open again, then [`RpcError::StreamReopened`] (or, for a stream
/// that is not opened again, [`RpcError::ConnectionLost`] and the end).
pub(crate) fn poll_next<T: DeserializeOwned>(
    receiver: &mut StreamReceiver<T>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<T, RpcError>>> {
    loop {
        let Some(resume) = receiver.resume.as_mut() else {
            return receiver.poll_direct(cx);
        };
        let opening = resume.opening.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = opening.as_mut() {
            let opened = std::task::ready!(pending.as_mut().poll(cx));
            *opening = None;
            return match opened {
                Ok(reopened) => {
                    tracing::debug!("stream reopened after a reconnect");
                    receiver.replace_with(reopened);
                    Poll::Ready(Some(Err(RpcError::StreamReopened)))
                }
                // The session failed or the server refused: that is the stream's end.
                Err(error) => {
                    receiver.resume = None;
                    Poll::Ready(Some(Err(error)))
                }
            };
        }
        match std::task::ready!(receiver.poll_direct(cx)) {
            // As for calls: a server's `ShuttingDown` counts only once it has said goodbye, or
            // one that ends streams so without going away would have them reopened forever.
            Some(Err(error)) if lost_on(&error, receiver.handle()).is_some() => {
                let reopen = receiver.resume.as_mut().and_then(|resume| {
                    let reopening = (resume.reopen.as_ref()?)();
                    *resume.opening.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(reopening);
                    Some(())
                });
                if reopen.is_none() {
                    // Not a subscription: its handler ran, and the stream ends here.
                    receiver.resume = None;
                    return Poll::Ready(Some(Err(RpcError::ConnectionLost {
                        may_have_run: true,
                        cause: Box::new(error),
                    })));
                }
                tracing::debug!(%error, "stream lost with its connection; reopening");
            }
            other => return Poll::Ready(other),
        }
    }
}
