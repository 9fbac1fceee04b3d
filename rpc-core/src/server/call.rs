//! Starting a call or a one-way call: decode, first poll in place, and the future that runs the
//! rest of the handler on its own task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::Poll;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::handle::Shared;
use crate::context::{CallContext, PeerInfo};
use crate::decode::{DecodeLimits, Plan};
use crate::frame::{encode_small, header_frame, EncodeError, Encoded};
use crate::protocol::{Header, ReplyStatus, WireError, DESCRIBE};
use crate::server::config::ServerConfig;
use crate::server::streams::Sending;
use crate::service::{
    Dispatch, DispatchError, HandlerFuture, MethodDescriptor, MethodKind, Outcome,
};
use crate::stream::produce::{end_once, produce};
use crate::stream::{CallOver, Inbound, Incoming};
use crate::writer::Outbox;

/// The rest of a handler that did not finish on its first poll, to run on its own task.
pub(super) type Rest<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the connection needs to start calls.
pub(crate) struct Calls<'a, D> {
    pub(crate) service: &'a D,
    pub(crate) config: &'a ServerConfig,
    pub(crate) peer: &'a Arc<PeerInfo>,
    /// The largest frame the client accepts: replies above it fail the call instead.
    pub(crate) client_max_frame: u32,
    /// Whether the transport takes frames in parts.
    pub(crate) in_parts: bool,
    /// The connection's way back to the caller, for `CallContext::callbacks`.
    pub(crate) link: Option<Weak<Shared>>,
    /// The limits each method's arguments decode under.
    pub(crate) args_plan: Plan,
    /// The limits the items of each method's stream from the client decode under.
    pub(crate) uploads_plan: Plan,
}

/// A call's handler, its arguments decoded, ready to start.
pub(super) struct Dispatched {
    handler: HandlerFuture,
    info: &'static MethodDescriptor,
}

/// A call just read: answered at once, or still running.
pub(super) enum Started {
    /// The reply, ready to send.
    Answered(Encoded),
    /// The handler did not finish on its first poll; the future yields its reply frame.
    Running(Rest<Encoded>),
}

impl<D: Dispatch> Calls<'_, D> {
    /// Starts a call: polls its handler once, so that a handler that does not wait on anything
    /// is answered without a task, a timer or a cancellation handle. `inbound` is the call's
    /// stream from the client, if it takes one: an item of it that does not decode fails the
    /// call.
    pub(super) fn start_call(
        &self,
        id: u64,
        method: u32,
        deadline: Option<Instant>,
        dispatched: Dispatched,
        inbound: Option<Arc<Inbound>>,
    ) -> Started {
        let Dispatched { mut handler, info } = dispatched;
        let span = tracing::debug_span!(
            "rpc.handle",
            service = self.service.descriptor().name,
            method = info.name,
            id
        );
        let context = || {
            CallContext::new(
                Arc::clone(self.peer),
                deadline,
                Some(id),
                info.name,
                self.link.clone(),
            )
        };
        let max_frame = self.client_max_frame;
        let in_parts = self.in_parts;
        let over = inbound.as_ref().map(|slot| CallOver(Arc::clone(slot)));
        if let Poll::Ready(outcome) = span.in_scope(|| first_poll(context(), &mut handler)) {
            return Started::Answered(match outcome {
                Ok(outcome) => reply_frame(id, outcome, method, max_frame, in_parts),
                Err(_) => {
                    tracing::warn!(parent: &span, "handler panicked");
                    failed(id, WireError::HandlerPanicked)
                }
            });
        }
        let guarded = failing_with(
            inbound,
            AssertUnwindSafe(context().scope(handler)).catch_unwind(),
        );
        let running = async move {
            let _over = over;
            let outcome = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, guarded).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::debug!("deadline exceeded, handler stopped");
                        return failed(id, WireError::DeadlineExceeded);
                    }
                },
                None => guarded.await,
            };
            match outcome {
                Ok(outcome) => reply_frame(id, outcome, method, max_frame, in_parts),
                Err(_) => {
                    tracing::warn!("handler panicked");
                    failed(id, WireError::HandlerPanicked)
                }
            }
        };
        Started::Running(Box::pin(running.instrument(span)))
    }

    /// Starts a call of a stream method: on its own task, the handler runs (within the call's
    /// deadline), then the reply says the stream is open and the items follow as `credit`
    /// allows. An item of `inbound` (the call's stream from the client, if it takes one) that
    /// does not decode fails the call, or ends the stream with the error once it is open.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_stream(
        &self,
        id: u64,
        method: u32,
        deadline: Option<Instant>,
        dispatched: Dispatched,
        inbound: Option<Arc<Inbound>>,
        sending: Sending,
        outbox: Outbox,
    ) -> Rest<()> {
        let Dispatched { handler, info } = dispatched;
        let span = tracing::debug_span!(
            "rpc.stream",
            service = self.service.descriptor().name,
            method = info.name,
            id
        );
        let context = CallContext::new(
            Arc::clone(self.peer),
            deadline,
            Some(id),
            info.name,
            self.link.clone(),
        );
        let guarded = failing_with(
            inbound.clone(),
            AssertUnwindSafe(context.scope(handler)).catch_unwind(),
        );
        let (max_frame, in_parts) = (self.client_max_frame, self.in_parts);
        let over = inbound.as_ref().map(|slot| CallOver(Arc::clone(slot)));
        let running = async move {
            let _over = over;
            let outcome = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, guarded).await,
                None => Ok(guarded.await),
            };
            // The call's answer if it does not open a stream.
            let opened = match outcome {
                Ok(Ok(Outcome::Stream(source))) => Ok(source),
                Ok(Ok(other)) => Err(reply_frame(id, other, method, max_frame, in_parts)),
                Ok(Err(_)) => {
                    tracing::warn!("stream handler panicked");
                    Err(failed(id, WireError::HandlerPanicked))
                }
                Err(_) => Err(failed(id, WireError::DeadlineExceeded)),
            };
            let Sending {
                credit,
                gate,
                replied,
            } = &sending;
            let source = {
                // Under the gate: a shutdown that came first has answered the call already, and
                // one that comes after finds the call answered (its gate closed, for an answer
                // that opens no stream), so that the call is answered once.
                let mut open = gate.lock().unwrap_or_else(|e| e.into_inner());
                if !*open {
                    return;
                }
                let source = match opened {
                    Ok(source) => source,
                    Err(answer) => {
                        *open = false;
                        let _ = outbox.send_encoded(answer, true);
                        return;
                    }
                };
                let opened = Encoded::One(header_frame(&Header::Reply {
                    id,
                    status: ReplyStatus::Ok,
                }));
                if outbox.send_encoded(opened, true).is_err() {
                    return;
                }
                replied.store(true, std::sync::atomic::Ordering::Relaxed);
                source
            };
            let items = produce(
                source,
                id,
                credit,
                &outbox,
                (max_frame, in_parts),
                Some(gate),
            );
            match inbound {
                None => items.await,
                Some(inbound) => {
                    tokio::select! {
                        () = items => {}
                        error = inbound.failure() => {
                            // Unless a shutdown has ended the stream already.
                            end_once(&outbox, id, Some(error), gate);
                        }
                    }
                }
            }
        };
        Box::pin(running.instrument(span))
    }

    /// Method `id` of the service, and the limits its arguments decode under.
    fn method(&self, id: u32) -> Option<(&'static MethodDescriptor, DecodeLimits)> {
        let methods = self.service.descriptor().methods;
        let index = methods.iter().position(|m| m.id == id)?;
        Some((methods.get(index)?, self.args_plan.at(index)))
    }

    /// The limits the items of the stream that method `id` takes from the client decode under.
    pub(super) fn upload_limits(&self, id: u32) -> DecodeLimits {
        self.uploads_plan.of(self.service.descriptor(), id)
    }

    /// The handler of call `id` of `method`, which must be of `kind`: its arguments decoded
    /// from the frame, large byte buffers as views of it, and `incoming` its stream from the
    /// client if it takes one. `Err` is the reply to a call that cannot start.
    pub(super) fn dispatch(
        &self,
        id: u64,
        method: u32,
        kind: MethodKind,
        frame: &Bytes,
        body_at: usize,
        incoming: Option<Incoming>,
    ) -> Result<Dispatched, Encoded> {
        let Some((info, limits)) = self.method(method) else {
            return Err(failed(id, WireError::UnknownMethod(method)));
        };
        if info.kind != kind {
            return Err(failed(id, WireError::WrongKind(method)));
        }
        let body = frame.get(body_at..).unwrap_or_default();
        let dispatched =
            crate::byte_buf::sharing(frame, || self.guarded(method, body, &limits, incoming));
        match dispatched {
            Some(Ok(handler)) => Ok(Dispatched { handler, info }),
            Some(Err(error)) => {
                tracing::debug!(id, method = info.name, %error, "call refused");
                Err(failed(id, WireError::from(&error)))
            }
            None => {
                tracing::warn!(id, method = info.name, "decoding the arguments panicked");
                Err(failed(id, WireError::HandlerPanicked))
            }
        }
    }

    /// The service's dispatcher, which decodes the arguments (running the argument types' own
    /// code: `Deserialize` and `TryFrom` implementations) and makes the handler: `None` if
    /// that panicked, which fails this one call, as a panic of its handler does, and not the
    /// connection's task.
    fn guarded(
        &self,
        method: u32,
        body: &[u8],
        limits: &DecodeLimits,
        incoming: Option<Incoming>,
    ) -> Option<Result<HandlerFuture, DispatchError>> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.service.dispatch(method, body, limits, incoming)
        }))
        .ok()
    }

    /// The answer to `describe` (call `id`): the service's schema.
    pub(super) fn describe(&self, id: u64) -> Encoded {
        let schema = self.service.descriptor().schema();
        reply_frame(
            id,
            Outcome::ok(schema),
            DESCRIBE,
            self.client_max_frame,
            self.in_parts,
        )
    }

    /// Starts a one-way call: `None` if it finished on its first poll (or was refused: one-way
    /// calls have no reply to carry an error), else the rest of its handler.
    ///
    /// `poll_now` is false while an earlier one-way handler of the connection is still running:
    /// this one must not start before it finishes.
    pub(super) fn start_oneway(
        &self,
        method: u32,
        body: &Bytes,
        poll_now: bool,
    ) -> Option<Rest<()>> {
        let descriptor = self.service.descriptor();
        let Some((info, limits)) = self
            .method(method)
            .filter(|(m, _)| m.kind == MethodKind::Oneway)
        else {
            tracing::debug!(
                method,
                "one-way call for a method that is not one-way; ignored"
            );
            return None;
        };
        let span =
            tracing::debug_span!("rpc.notify", service = descriptor.name, method = info.name);
        let mut handler = match self.guarded(method, body, &limits, None) {
            Some(Ok(handler)) => handler,
            Some(Err(error)) => {
                tracing::debug!(parent: &span, %error, "one-way call refused");
                return None;
            }
            None => {
                tracing::warn!(parent: &span, "decoding the arguments of a one-way call panicked");
                return None;
            }
        };
        let context = || {
            CallContext::new(
                Arc::clone(self.peer),
                None,
                None,
                info.name,
                self.link.clone(),
            )
        };
        if poll_now {
            if let Poll::Ready(outcome) = span.in_scope(|| first_poll(context(), &mut handler)) {
                if outcome.is_err() {
                    tracing::warn!(parent: &span, "one-way handler panicked");
                }
                return None;
            }
        }
        let guarded = AssertUnwindSafe(context().scope(handler)).catch_unwind();
        Some(Box::pin(
            async move {
                if guarded.await.is_err() {
                    tracing::warn!("one-way handler panicked");
                }
            }
            .instrument(span),
        ))
    }
}

/// `handler`, stopped with the error if an item of the call's stream from the client does not
/// decode.
async fn failing_with<F>(inbound: Option<Arc<Inbound>>, handler: F) -> std::thread::Result<Outcome>
where
    F: Future<Output = std::thread::Result<Outcome>>,
{
    let Some(inbound) = inbound else {
        return handler.await;
    };
    tokio::select! {
        biased;
        outcome = handler => outcome,
        error = inbound.failure() => Ok(Outcome::Failed(error)),
    }
}

/// Polls a handler once, in place, in its call's context, with its panic caught. A handler
/// that is still pending is polled again by the task it is moved to, which registers its own
/// waker: none is needed here.
fn first_poll(
    context: CallContext,
    handler: &mut HandlerFuture,
) -> Poll<std::thread::Result<Outcome>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // In place, without a future around the handler's: this runs for every call.
    let polled = context.sync_scope(|| {
        std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(&mut cx)))
    });
    match polled {
        Ok(Poll::Ready(outcome)) => Poll::Ready(Ok(outcome)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(Err(panic)),
    }
}

/// The reply frame of a call whose handler returned.
fn reply_frame(id: u64, outcome: Outcome, method: u32, max_frame: u32, in_parts: bool) -> Encoded {
    let (status, encoded) = match outcome {
        Outcome::Ok(encoded) => (ReplyStatus::Ok, encoded),
        Outcome::AppError(encoded) => (ReplyStatus::AppError, encoded),
        Outcome::Failed(error) => return failed(id, error),
        Outcome::NoReply | Outcome::Stream(_) => return failed(id, WireError::WrongKind(method)),
    };
    // A reply with a value or typed error always has a small header.
    let Some(header) = encode_small(&Header::Reply { id, status }) else {
        return failed(id, WireError::EncodeFailed);
    };
    match encoded.into_frame(header.as_bytes(), max_frame, in_parts) {
        Ok(frame) => frame,
        Err(EncodeError::TooLarge { len, max }) => {
            failed(id, WireError::ResultTooLarge { len, max })
        }
        Err(EncodeError::Postcard(_)) => failed(id, WireError::EncodeFailed),
    }
}

/// The reply of a call that failed before or instead of returning.
pub(super) fn failed(id: u64, error: WireError) -> Encoded {
    Encoded::One(header_frame(&Header::Reply {
        id,
        status: ReplyStatus::Failed(error),
    }))
}
