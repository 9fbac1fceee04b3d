//! The server engine: serves one connection of a service.
//!
//! [`serve_connection`] performs the handshake, then reads calls and runs their handlers
//! concurrently on the connection's task (a handler that finishes on its first poll is answered
//! at once), writes replies as handlers finish (in any order; the replies that are ready
//! together go out in one write), drops a handler when its caller cancels or its deadline
//! passes, and stops reading while the connection has [`ServerConfig::max_in_flight`] calls
//! running (excess calls wait in the transport, none is dropped). The transport's server loop
//! calls it once per accepted connection.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::context::{CallContext, PeerInfo};
use crate::decode::DecodeLimits;
use crate::error::ProtocolError;
use crate::frame::{header_frame, EncodeError, FrameError, FrameRead, FrameWrite};
use crate::protocol::{
    GoodbyeReason, Header, Rejection, ReplyStatus, WireError, DEFAULT_MAX_FRAME, MAGIC,
    PROTOCOL_VERSION,
};
use crate::service::{Dispatch, MethodKind, Outcome};
use crate::writer::spawn_writer;

/// Settings of the server side of connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest frame accepted from a client. Default 16 MiB.
    pub max_frame: u32,
    /// Time a client has to complete its handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Calls running at once on one connection; further calls wait unread. Default 128.
    pub max_in_flight: usize,
    /// Limits on decoding arguments.
    pub decode_limits: DecodeLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            max_in_flight: 128,
            decode_limits: DecodeLimits::default(),
        }
    }
}

impl ServerConfig {
    /// Sets the largest frame accepted from a client.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets the time a client has to complete its handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many calls may run at once on one connection.
    ///
    /// # Panics
    ///
    /// If `calls` is zero.
    #[track_caller]
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        assert!(calls > 0, "max_in_flight must be at least 1");
        self.max_in_flight = calls;
        self
    }

    /// Sets the maximum nesting depth of decoded arguments.
    pub fn max_decode_depth(mut self, depth: u32) -> Self {
        self.decode_limits.max_depth = depth;
        self
    }
}

/// A graceful-shutdown signal shared by a server and its connections.
///
/// Once [triggered](Shutdown::trigger), connections stop taking calls, tell their clients
/// (a goodbye frame), finish the calls in flight and close.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that has not been triggered.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Triggers the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the shutdown is triggered.
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // Err means the sender is gone, which cannot happen while `self` lives; either way
            // there is nothing left to wait for.
            let _ = rx.wait_for(|t| *t).await;
        }
    }
}

/// Why a server connection ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// No hello arrived within the handshake timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The client's hello was refused.
    #[error("handshake rejected: {0}")]
    Rejected(#[source] Rejection),
    /// The client sent a bad frame.
    #[error("bad frame")]
    Frame(#[source] FrameError),
    /// The client broke the protocol.
    #[error("protocol violation")]
    Protocol(#[source] ProtocolError),
    /// Writing to the client failed.
    #[error("write failed")]
    Io(#[source] std::io::Error),
}

/// Most frames gathered before they are sent.
const MAX_GATHERED: usize = 256;

type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A handler in its call's context, with its panics caught.
type Guarded = Pin<Box<dyn Future<Output = std::thread::Result<Outcome>> + Send>>;

/// A finished handler: the request id and the reply frame, if any.
struct Done {
    id: Option<u64>,
    reply: Option<Bytes>,
}

/// Serves one connection until the client closes it, it breaks, or `shutdown` is triggered and
/// the calls in flight have finished.
///
/// # Errors
///
/// Why the connection ended abnormally; the connection is closed in every case and the error is
/// for logging. A client that simply goes away is `Ok`.
pub async fn serve_connection<D, R, W>(
    mut reader: R,
    mut writer: W,
    peer: PeerInfo,
    service: D,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> Result<(), ConnectionError>
where
    D: Dispatch,
    R: FrameRead,
    W: FrameWrite,
{
    let descriptor = service.descriptor();
    let client_max_frame = tokio::select! {
        result = tokio::time::timeout(config.handshake_timeout, handshake(&mut reader, &mut writer, &service, config)) => {
            match result {
                Ok(result) => result?,
                Err(_) => return Err(ConnectionError::HandshakeTimeout),
            }
        }
        () = shutdown.triggered() => {
            let _ = writer.write_frames(&[header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown })]).await;
            return Ok(());
        }
    };
    tracing::debug!(service = descriptor.name, ?peer, "connection open");

    let (write_err_tx, mut write_err) = oneshot::channel();
    let (outbox, writer_task) = spawn_writer(writer, move |e| {
        let _ = write_err_tx.send(e);
    });
    let peer = Arc::new(peer);
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut cancels: HashMap<u64, AbortHandle> = HashMap::new();
    let mut draining = false;
    let mut client_gone = false;
    // Frames to send, gathered while more work is ready at once.
    let mut out: Vec<Bytes> = Vec::new();
    let shutdown_signal = shutdown.triggered();
    tokio::pin!(shutdown_signal);

    let result = loop {
        if (draining || client_gone) && running.is_empty() {
            break Ok(());
        }
        let reading = !draining && !client_gone && running.len() < config.max_in_flight;
        if out.len() >= MAX_GATHERED {
            let _ = outbox.send_all_now(&mut out);
        }
        tokio::select! {
            biased;
            Some(done) = running.next(), if !running.is_empty() => {
                if let Some(id) = done.id {
                    cancels.remove(&id);
                }
                if let Some(frame) = done.reply {
                    out.push(frame);
                }
            }
            error = &mut write_err => {
                break match error {
                    Ok(e) => Err(ConnectionError::Io(e)),
                    Err(_) => Ok(()),
                };
            }
            frame = reader.read_frame(), if reading => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        client_gone = true;
                        abort_all(&mut cancels);
                        continue;
                    }
                    Err(error) => {
                        if let FrameError::TooLarge { len, max } = error {
                            out.push(header_frame(&Header::Goodbye {
                                reason: GoodbyeReason::FrameTooLarge { len, max },
                            }));
                        }
                        break Err(ConnectionError::Frame(error));
                    }
                };
                let call = match postcard::take_from_bytes::<Header>(&frame) {
                    Ok((header, rest)) => (header, frame.len() - rest.len()),
                    Err(_) => break Err(protocol_violation(&mut out, ProtocolError::BadHeader)),
                };
                match call {
                    (Header::Call { id, method, deadline_us }, body_at) => {
                        if cancels.contains_key(&id) {
                            break Err(protocol_violation(&mut out, ProtocolError::DuplicateId(id)));
                        }
                        let deadline = deadline_us
                            .and_then(|us| Instant::now().checked_add(Duration::from_micros(us)));
                        match start_call(&service, config, &peer, id, method, deadline, &frame, body_at, client_max_frame) {
                            Started::Answered(reply) => out.push(reply),
                            Started::Running(handler) => {
                                let (abort, registration) = AbortHandle::new_pair();
                                cancels.insert(id, abort);
                                running.push(Box::pin(Abortable::new(handler, registration).map(move |done| {
                                    done.unwrap_or(Done { id: Some(id), reply: None })
                                })));
                            }
                        }
                    }
                    (Header::Notify { method }, body_at) => {
                        if let Some(handler) = start_notify(&service, config, &peer, method, &frame.slice(body_at..)) {
                            running.push(handler);
                        }
                    }
                    (Header::Cancel { id }, _) => {
                        if let Some(handle) = cancels.remove(&id) {
                            tracing::debug!(id, "call cancelled by client");
                            handle.abort();
                        }
                    }
                    (Header::Goodbye { .. }, _) => {
                        client_gone = true;
                        abort_all(&mut cancels);
                    }
                    (Header::Hello { .. } | Header::Welcome { .. } | Header::Reject(_), _) => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("handshake")));
                    }
                    (Header::Reply { .. }, _) => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("reply")));
                    }
                    (Header::StreamItem { .. } | Header::StreamEnd { .. } | Header::Credit { .. }, _) => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("stream")));
                    }
                }
            }
            () = &mut shutdown_signal, if !draining => {
                draining = true;
                out.push(header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown }));
            }
            // Nothing else to do right now: send the replies gathered so far, in one write if
            // the transport takes them at once.
            () = std::future::ready(()), if !out.is_empty() => {
                let _ = outbox.send_all_now(&mut out);
            }
        }
    };
    // Dropping the handlers cancels them; dropping the outbox lets the writer flush and close.
    let _ = outbox.send_all_now(&mut out);
    drop(running);
    drop(outbox);
    let _ = writer_task.await;
    tracing::debug!(service = descriptor.name, "connection closed");
    result
}

/// The client is gone (end of stream or goodbye): nobody will read replies, so the calls are
/// dropped; one-way calls run to completion.
fn abort_all(cancels: &mut HashMap<u64, AbortHandle>) {
    for (_, handle) in cancels.drain() {
        handle.abort();
    }
}

fn protocol_violation(out: &mut Vec<Bytes>, error: ProtocolError) -> ConnectionError {
    out.push(header_frame(&Header::Goodbye {
        reason: GoodbyeReason::ProtocolViolation,
    }));
    ConnectionError::Protocol(error)
}

/// Reads the hello and answers it; returns the client's maximum frame.
async fn handshake<D: Dispatch, R: FrameRead, W: FrameWrite>(
    reader: &mut R,
    writer: &mut W,
    service: &D,
    config: &ServerConfig,
) -> Result<u32, ConnectionError> {
    let descriptor = service.descriptor();
    let frame = reader
        .read_frame()
        .await
        .map_err(ConnectionError::Frame)?
        .ok_or(ConnectionError::Protocol(ProtocolError::ExpectedHandshake))?;
    let (version, service_name, fingerprint, max_frame) =
        match postcard::take_from_bytes::<Header>(&frame) {
            Ok((
                Header::Hello {
                    magic,
                    version,
                    service,
                    fingerprint,
                    max_frame,
                },
                _,
            )) => {
                if magic != MAGIC {
                    return Err(ConnectionError::Protocol(ProtocolError::BadMagic));
                }
                (version, service, fingerprint, max_frame)
            }
            Ok(_) => return Err(ConnectionError::Protocol(ProtocolError::ExpectedHandshake)),
            Err(_) => return Err(ConnectionError::Protocol(ProtocolError::BadHeader)),
        };
    let rejection = if version != PROTOCOL_VERSION {
        Some(Rejection::UnsupportedVersion {
            client: version,
            server: PROTOCOL_VERSION,
        })
    } else if service_name != descriptor.name {
        Some(Rejection::UnknownService {
            requested: service_name,
            served: descriptor.name.to_owned(),
        })
    } else if fingerprint != descriptor.fingerprint {
        Some(Rejection::FingerprintMismatch {
            service: service_name,
            client: fingerprint,
            server: descriptor.fingerprint,
        })
    } else {
        None
    };
    if let Some(rejection) = rejection {
        let _ = writer
            .write_frames(&[header_frame(&Header::Reject(rejection.clone()))])
            .await;
        let _ = writer.close().await;
        return Err(ConnectionError::Rejected(rejection));
    }
    let welcome = header_frame(&Header::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: config.max_frame,
    });
    writer
        .write_frames(&[welcome])
        .await
        .map_err(ConnectionError::Io)?;
    Ok(max_frame)
}

/// The reply frame of a call whose handler returned.
fn reply_frame(id: u64, outcome: Outcome, method: u32, max_frame: u32) -> Bytes {
    let (status, encoded) = match outcome {
        Outcome::Ok(encoded) => (ReplyStatus::Ok, encoded),
        Outcome::AppError(encoded) => (ReplyStatus::AppError, encoded),
        Outcome::Failed(error) => return failed(id, error),
        Outcome::NoReply => return failed(id, WireError::WrongKind(method)),
    };
    let mut header = [0u8; 16];
    let header = match postcard::to_slice(&Header::Reply { id, status }, &mut header) {
        Ok(header) => &*header,
        Err(_) => return failed(id, WireError::EncodeFailed),
    };
    match encoded.into_frame(header, max_frame) {
        Ok(frame) => frame,
        Err(EncodeError::TooLarge { len, max }) => {
            failed(id, WireError::ResultTooLarge { len, max })
        }
        Err(EncodeError::Postcard(_)) => failed(id, WireError::EncodeFailed),
    }
}

fn failed(id: u64, error: WireError) -> Bytes {
    header_frame(&Header::Reply {
        id,
        status: ReplyStatus::Failed(error),
    })
}

/// A call just read: answered at once, or still running.
enum Started {
    /// The reply, ready to send.
    Answered(Bytes),
    /// The handler did not finish on its first poll.
    Running(Running),
}

/// Starts a call: decodes it and polls its handler once, so that a handler that does not wait
/// on anything is answered without a task, a timer or a cancellation handle.
#[allow(clippy::too_many_arguments)]
fn start_call<D: Dispatch>(
    service: &D,
    config: &ServerConfig,
    peer: &Arc<PeerInfo>,
    id: u64,
    method: u32,
    deadline: Option<Instant>,
    frame: &Bytes,
    body_at: usize,
    client_max_frame: u32,
) -> Started {
    let descriptor = service.descriptor();
    let Some(info) = descriptor.method(method) else {
        return Started::Answered(failed(id, WireError::UnknownMethod(method)));
    };
    if info.kind != MethodKind::Call {
        return Started::Answered(failed(id, WireError::WrongKind(method)));
    }
    let span = tracing::debug_span!(
        "rpc.handle",
        service = descriptor.name,
        method = info.name,
        id
    );
    let body = frame.get(body_at..).unwrap_or_default();
    let dispatched = crate::byte_buf::sharing(frame, || {
        service.dispatch(method, body, &config.decode_limits)
    });
    let handler = match dispatched {
        Ok(handler) => handler,
        Err(error) => {
            tracing::debug!(parent: &span, %error, "call refused");
            return Started::Answered(failed(id, WireError::from(&error)));
        }
    };
    let mut handler = handler;
    // The first poll, in place: a handler that finishes at once costs no allocation here. A
    // handler that is still pending is polled again by the connection's set of running calls,
    // which polls every call it is given: no wake-up is needed from this one.
    let first = {
        let context = CallContext::new(Arc::clone(peer), deadline, Some(id), info.name);
        let once = std::pin::pin!(AssertUnwindSafe(context.scope(&mut handler)).catch_unwind());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        span.in_scope(|| once.poll(&mut cx))
    };
    if let Poll::Ready(outcome) = first {
        return Started::Answered(match outcome {
            Ok(outcome) => reply_frame(id, outcome, method, client_max_frame),
            Err(_) => {
                tracing::warn!(parent: &span, "handler panicked");
                failed(id, WireError::HandlerPanicked)
            }
        });
    }
    let context = CallContext::new(Arc::clone(peer), deadline, Some(id), info.name);
    let guarded: Guarded = Box::pin(AssertUnwindSafe(context.scope(handler)).catch_unwind());
    let running = async move {
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, guarded).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::debug!("deadline exceeded, handler stopped");
                    return Done {
                        id: Some(id),
                        reply: Some(failed(id, WireError::DeadlineExceeded)),
                    };
                }
            },
            None => guarded.await,
        };
        let reply = match outcome {
            Ok(outcome) => reply_frame(id, outcome, method, client_max_frame),
            Err(_) => {
                tracing::warn!("handler panicked");
                failed(id, WireError::HandlerPanicked)
            }
        };
        Done {
            id: Some(id),
            reply: Some(reply),
        }
    };
    Started::Running(Box::pin(running.instrument(span.clone())))
}

fn start_notify<D: Dispatch>(
    service: &D,
    config: &ServerConfig,
    peer: &Arc<PeerInfo>,
    method: u32,
    body: &Bytes,
) -> Option<Running> {
    let descriptor = service.descriptor();
    let Some(info) = descriptor
        .method(method)
        .filter(|m| m.kind == MethodKind::Oneway)
    else {
        tracing::debug!(
            method,
            "notification for a method that is not one-way; ignored"
        );
        return None;
    };
    let span = tracing::debug_span!("rpc.notify", service = descriptor.name, method = info.name);
    let handler = match service.dispatch(method, body, &config.decode_limits) {
        Ok(handler) => handler,
        Err(error) => {
            tracing::debug!(parent: &span, %error, "notification refused");
            return None;
        }
    };
    let context = CallContext::new(Arc::clone(peer), None, None, info.name);
    Some(Box::pin(
        async move {
            if AssertUnwindSafe(context.scope(handler))
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::warn!("one-way handler panicked");
            }
            Done {
                id: None,
                reply: None,
            }
        }
        .instrument(span),
    ))
}
