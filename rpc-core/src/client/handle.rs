//! The handle to a client connection: connect, call, notify, re-time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::config::ClientConfig;
use crate::client::handshake::handshake;
use crate::client::pending::{CallState, Conn, Reply, StreamSlot, Waiter};
use crate::client::reader::read_replies;
use crate::decode::{self, DecodeLimits};
use crate::error::{ProtocolError, RpcError};
use crate::frame::{
    encode_frame, header_frame, EncodeError, Encoded, FrameBody, FrameRead, FrameWrite,
};
use crate::protocol::{GoodbyeReason, Header, ReplyStatus, WireError};
use crate::service::{MethodDescriptor, MethodKind, ServiceDescriptor};
use crate::writer::{spawn_writer, Closer, Outbox};

pub(super) struct Shared {
    pub(super) conn: Arc<Conn>,
    pub(super) outbox: Outbox,
    service: &'static ServiceDescriptor,
    pub(super) server_max_frame: u32,
    pub(super) next_id: AtomicU64,
    limits: DecodeLimits,
    pub(super) stream_window: u32,
    /// Reads replies; stopped with the last handle, whatever the server does.
    reader_task: AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone, so no call waits: tell the server, so it closes the
        // connection even where the transport cannot half-close (a pipe's write end closes only
        // with its read end), and stop reading. The writer task writes the goodbye and closes
        // the sending direction once the outbox is dropped.
        let _ = self.outbox.send(header_frame(&Header::Goodbye {
            reason: GoodbyeReason::ShuttingDown,
        }));
        self.conn.released.store(true, Ordering::Release);
        self.reader_task.abort();
    }
}

/// How long the reader has, after a write failed, to deliver what the server sent before it
/// went.
const READER_GRACE: Duration = Duration::from_millis(100);

/// Fails the calls of a connection whose reader task is dropped before it ends, and, unless
/// the last handle stopped it, closes the transport too: the tasks died with their runtime, and
/// the peer must see the connection go.
struct FailOnDrop<'a> {
    conn: &'a Conn,
    closer: Closer,
}

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        self.conn.fail_all(RpcError::ConnectionClosed);
        if !self.conn.released.load(Ordering::Acquire) {
            self.closer.close_now();
        }
    }
}

/// An untyped, connected client: the engine under every generated client.
///
/// Cheap to clone (an `Arc`); clones share the connection. The connection closes when the last
/// clone is dropped.
#[derive(Clone)]
pub struct ClientHandle {
    pub(super) shared: Arc<Shared>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("service", &self.shared.service.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// Performs the handshake for `service` over a transport and starts the connection's tasks.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RpcError::Rejected`] if the server refuses (version, service or fingerprint),
    /// [`RpcError::HandshakeTimeout`] if it does not answer in time, and
    /// [`RpcError::ConnectionClosed`], [`RpcError::Frame`] or
    /// [`RpcError::Protocol`] if the connection fails or the peer does not speak the protocol.
    pub async fn connect<R: FrameRead, W: FrameWrite>(
        mut reader: R,
        mut writer: W,
        service: &'static ServiceDescriptor,
        config: &ClientConfig,
    ) -> Result<Self, RpcError> {
        let server_max_frame = handshake(&mut reader, &mut writer, service, config).await?;

        let conn = Arc::new(Conn {
            pending: Mutex::default(),
            shutting_down: AtomicBool::new(false),
            released: AtomicBool::new(false),
            deadline_moved: Notify::new(),
        });
        let writer_conn = Arc::clone(&conn);
        // A write fails when the server has gone; what it sent before going (replies, the end
        // of a stream) may still wait to be read. The reader gets a moment to deliver it and to
        // see the end of the connection itself, then the write's error fails what is left.
        let (outbox, writer_task) = spawn_writer(writer, move |e| {
            tokio::spawn(async move {
                tokio::time::sleep(READER_GRACE).await;
                writer_conn.fail_all(e.into());
            });
        });
        let reader_conn = Arc::clone(&conn);
        let closer = outbox.closer();
        let limits = config.decode_limits;
        let max_frame = config.max_frame;
        let reader_task = tokio::spawn(
            async move {
                // Fails every call if this task is dropped before it ends (its runtime shut
                // down), so that no caller on another runtime waits forever.
                let guard = FailOnDrop {
                    conn: &reader_conn,
                    closer,
                };
                let error = read_replies(reader, &reader_conn, max_frame).await;
                tracing::debug!(%error, "client connection ended");
                writer_task.abort();
                reader_conn.fail_all(error);
                drop(guard);
            }
            .instrument(tracing::debug_span!("rpc.client", service = service.name)),
        );
        Ok(Self {
            shared: Arc::new(Shared {
                conn,
                outbox,
                service,
                server_max_frame,
                next_id: AtomicU64::new(1),
                limits,
                stream_window: config.stream_window,
                reader_task: reader_task.abort_handle(),
            }),
            timeout: config.default_timeout,
        })
    }

    /// A handle to the same connection whose calls have deadline `timeout` from their start
    /// (`None`: no deadline).
    #[must_use]
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            timeout,
        }
    }

    /// The deadline given to calls made through this handle.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The service this handle is connected to.
    pub fn service(&self) -> &'static ServiceDescriptor {
        self.shared.service
    }

    /// Whether the connection is closed (every call would fail).
    pub fn is_closed(&self) -> bool {
        self.shared.conn.lock().closed.is_some()
    }

    /// Calls a method whose result is a plain `T`.
    ///
    /// # Errors
    ///
    /// Any [`RpcError`]: the connection failed or closed, the deadline passed, the server could
    /// not run the call ([`RpcError::Remote`]), or the reply did not decode.
    pub async fn call<A, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<T, RpcError>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let reply = self.request(method, args).await?;
        self.value(&reply)
    }

    /// The value of a reply to a method whose result is a plain `T`.
    pub(super) fn value<T: DeserializeOwned>(&self, reply: &Reply) -> Result<T, RpcError> {
        match &reply.status {
            ReplyStatus::Ok => self.decode(reply),
            ReplyStatus::AppError => Err(ProtocolError::UnexpectedKind("application error").into()),
            ReplyStatus::Failed(e) => Err(remote_error(e.clone())),
        }
    }

    /// Calls a method declared as returning `Result<T, E>`: the outer result is the
    /// framework's, the inner one the method's.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call`].
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
        let reply = self.request(method, args).await?;
        self.fallible(&reply)
    }

    /// The value or typed error of a reply to a method declared as returning `Result<T, E>`.
    pub(super) fn fallible<T, E>(&self, reply: &Reply) -> Result<Result<T, E>, RpcError>
    where
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match &reply.status {
            ReplyStatus::Ok => self.decode(reply).map(Ok),
            ReplyStatus::AppError => self.decode(reply).map(Err),
            ReplyStatus::Failed(e) => Err(remote_error(e.clone())),
        }
    }

    /// A request id not in use on this connection.
    pub(super) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a one-way call. Returns once the call is queued for sending: there is no reply, and
    /// the server's handler may still be running (or may never run if the connection drops).
    ///
    /// # Errors
    ///
    /// [`RpcError::ConnectionClosed`] (or the error that closed it) if the connection is gone,
    /// [`RpcError::Encode`] or [`RpcError::RequestTooLarge`] if the arguments cannot be sent.
    pub async fn notify<A>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<(), RpcError>
    where
        A: Serialize + ?Sized,
    {
        debug_assert_eq!(method.kind, MethodKind::Oneway);
        let frame = self.encode(
            &Header::Notify {
                method: method.index,
            },
            args,
        )?;
        self.check_open()?;
        tracing::trace!(
            service = self.shared.service.name,
            method = method.name,
            "notify"
        );
        self.shared
            .outbox
            .send_encoded(frame, false)
            .map_err(|_| self.closed_error())
    }

    pub(super) fn decode<T: DeserializeOwned>(&self, reply: &Reply) -> Result<T, RpcError> {
        crate::byte_buf::sharing(&reply.frame, || {
            decode::from_slice(reply.body(), &self.shared.limits)
        })
        .map_err(RpcError::Decode)
    }

    fn encode<A: Serialize + ?Sized>(
        &self,
        header: &Header,
        args: &A,
    ) -> Result<Encoded, RpcError> {
        let in_parts = self.shared.outbox.accepts_parts();
        encode_frame(
            header,
            FrameBody::Value(args),
            self.shared.server_max_frame,
            in_parts,
        )
        .map_err(|e| match e {
            EncodeError::Postcard(e) => RpcError::Encode(e),
            EncodeError::TooLarge { len, max } => RpcError::RequestTooLarge { len, max },
        })
    }

    fn closed_error(&self) -> RpcError {
        self.shared
            .conn
            .lock()
            .closed
            .clone()
            .unwrap_or(RpcError::ConnectionClosed)
    }

    fn check_open(&self) -> Result<(), RpcError> {
        if self.shared.conn.shutting_down.load(Ordering::Acquire) {
            return Err(RpcError::ShuttingDown);
        }
        match &self.shared.conn.lock().closed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    async fn request<A: Serialize + ?Sized>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<Reply, RpcError> {
        self.request_with(self.next_id(), method, args, None).await
    }

    pub(super) async fn request_with<A: Serialize + ?Sized>(
        &self,
        id: u64,
        method: &'static MethodDescriptor,
        args: &A,
        stream_window: Option<u32>,
    ) -> Result<Reply, RpcError> {
        let shared = &self.shared;
        let span = tracing::debug_span!(
            "rpc.call",
            service = shared.service.name,
            method = method.name,
            id
        );
        async move {
            let started = Instant::now();
            let deadline = self.timeout.and_then(|t| started.checked_add(t));
            let frame = self.encode(
                &Header::Call {
                    id,
                    method: method.index,
                    deadline_us: self
                        .timeout
                        .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
                },
                args,
            )?;
            if shared.conn.shutting_down.load(Ordering::Acquire) {
                return Err(RpcError::ShuttingDown);
            }
            let alone;
            let deadline_moved = {
                let mut pending = shared.conn.lock();
                if let Some(error) = &pending.closed {
                    return Err(error.clone());
                }
                pending.calls.insert(
                    id,
                    Waiter {
                        state: CallState::Waiting(None),
                        deadline,
                    },
                );
                if let Some(window) = stream_window {
                    // Before the call goes out: items may follow the reply at once.
                    pending.streams.insert(id, StreamSlot::new(window));
                }
                alone = pending.calls.len() == 1;
                match deadline {
                    Some(deadline) if pending.check_at.is_none_or(|at| deadline < at) => {
                        pending.check_at = Some(deadline);
                        true
                    }
                    _ => false,
                }
            };
            if deadline_moved {
                shared.conn.deadline_moved.notify_one();
            }
            let mut guard = InFlight {
                shared,
                id,
                armed: true,
            };
            // The only call in flight is written at once; calls that follow others are queued,
            // so that the writer task sends them together.
            let mut sent = shared.outbox.send_encoded(frame, alone);
            if let (Some(window), Ok(())) = (stream_window, &sent) {
                // The first credit follows the call: the server sends nothing before it.
                sent = shared.outbox.send(header_frame(&Header::Credit {
                    stream: id,
                    items: window,
                }));
            }
            if sent.is_err() {
                guard.armed = false;
                shared.conn.lock().calls.remove(&id);
                return Err(self.closed_error());
            }
            // The reader task fails the call when its deadline passes.
            let received = std::future::poll_fn(|cx| shared.conn.poll_outcome(id, cx)).await;
            if let Err(RpcError::DeadlineExceeded) = &received {
                tracing::debug!("deadline exceeded");
                let _ = shared.outbox.send(header_frame(&Header::Cancel { id }));
            }
            guard.armed = false;
            let reply = received?;
            tracing::trace!(elapsed_us = started.elapsed().as_micros() as u64, "reply");
            Ok(reply)
        }
        .instrument(span)
        .await
    }
}

/// The error for a call the server failed. A deadline the server enforced is the same cause as
/// one the client's own timer caught.
pub(super) fn remote_error(error: WireError) -> RpcError {
    match error {
        WireError::DeadlineExceeded => RpcError::DeadlineExceeded,
        other => RpcError::Remote(other),
    }
}

/// Cancels a call on the server if its caller stops waiting (drop or deadline).
struct InFlight<'a> {
    shared: &'a Shared,
    id: u64,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (was_pending, stream) = {
            let mut pending = self.shared.conn.lock();
            let waiting = pending
                .calls
                .remove(&self.id)
                .is_some_and(|waiter| waiter.is_waiting());
            (waiting, pending.streams.remove(&self.id).is_some())
        };
        // A stream opened (or being opened) for a caller that is gone is cancelled too.
        if was_pending || stream {
            tracing::debug!(id = self.id, "call cancelled");
            let _ = self
                .shared
                .outbox
                .send(header_frame(&Header::Cancel { id: self.id }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::memory;
    use crate::protocol::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
    use crate::service::{MethodDescriptor, MethodKind, ServiceDescriptor};

    static METHODS: [MethodDescriptor; 1] = [MethodDescriptor {
        index: 0,
        name: "wait",
        takes_stream: false,
        kind: MethodKind::Call,
        idempotent: false,
    }];

    static SERVICE: ServiceDescriptor = ServiceDescriptor {
        name: "Silent",
        fingerprint: 1,
        methods: &METHODS,
    };

    /// A client connected to a server that welcomes it, then never answers: it reports the
    /// headers it reads.
    async fn silent_server() -> (ClientHandle, mpsc::UnboundedReceiver<Header>) {
        let ((mut reader, mut writer), (client_reader, client_writer)) = memory::pair();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
            let welcome = header_frame(&Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            });
            writer.write_frames(&[welcome]).await.expect("welcome");
            while let Ok(Some(frame)) = reader.read_frame(DEFAULT_MAX_FRAME).await {
                let (header, _) = postcard::take_from_bytes::<Header>(&frame).expect("header");
                let _ = seen_tx.send(header);
            }
        });
        let client = ClientHandle::connect(
            client_reader,
            client_writer,
            &SERVICE,
            &ClientConfig::default(),
        )
        .await
        .expect("connects");
        (client, seen)
    }

    async fn wait(client: &ClientHandle) -> Result<(), RpcError> {
        client.call(&METHODS[0], &()).await
    }

    fn call_id(header: Option<Header>) -> Option<u64> {
        match header {
            Some(Header::Call { id, .. }) => Some(id),
            _ => None,
        }
    }

    /// The client's own deadlines: a short one behind a long one fires on time, each expired
    /// call is cancelled on the server, and the calls with later deadlines go on.
    #[tokio::test(start_paused = true)]
    async fn each_call_expires_at_its_own_deadline() {
        let (client, mut seen) = silent_server().await;
        let long = client.with_timeout(Some(Duration::from_secs(30)));
        let short = client.with_timeout(Some(Duration::from_millis(50)));
        let forever = client.with_timeout(None);
        let started = Instant::now();
        let mut waits_long = Box::pin(wait(&long));
        let mut waits_forever = Box::pin(wait(&forever));
        assert!(waits_long.as_mut().now_or_never().is_none());
        assert!(waits_forever.as_mut().now_or_never().is_none());
        let long_id = call_id(seen.recv().await).expect("a call");
        call_id(seen.recv().await).expect("a call");

        // Bounded, so that a timer that never fires fails the test instead of hanging it.
        let bound = Duration::from_secs(60);
        let short_result = tokio::time::timeout(bound, wait(&short)).await;
        assert!(matches!(short_result, Ok(Err(RpcError::DeadlineExceeded))));
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        let short_id = call_id(seen.recv().await).expect("a call");
        assert_eq!(seen.recv().await, Some(Header::Cancel { id: short_id }));

        let long_result = tokio::time::timeout(bound, waits_long).await;
        assert!(matches!(long_result, Ok(Err(RpcError::DeadlineExceeded))));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(seen.recv().await, Some(Header::Cancel { id: long_id }));
        // The call without a deadline is still waiting.
        assert!(waits_forever.as_mut().now_or_never().is_none());
        assert!(!client.is_closed());
    }
}
