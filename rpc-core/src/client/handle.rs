//! The handle to a client connection: connect, call, notify, re-time.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::binding::{Binding, MethodBinding};
use crate::client::pending::{CallState, Conn, Reply, StreamSlot, Waiter};
use crate::decode::{self, DecodeLimits, Plan};
use crate::error::{ProtocolError, RpcError};
use crate::frame::{encode_frame, header_frame, EncodeError, Encoded, FrameBody};
use crate::protocol::{GoodbyeReason, Header, ReplyStatus, WireError};
use crate::service::{MethodDescriptor, MethodKind, ServiceDescriptor};
use crate::writer::Outbox;

/// Most bytes of one side's calls and one-way calls waiting to be written before a call or
/// one-way call waits for room (1 MiB, as [`crate::ServerConfig::max_unsent_bytes`] by
/// default): a peer that does not read cannot make calls queue without end.
pub(crate) const MAX_UNSENT_CALLS: usize = 1024 * 1024;

/// What the handles of one connection share.
pub(crate) struct Shared {
    pub(super) conn: Arc<Conn>,
    pub(super) outbox: Outbox,
    pub(super) service: &'static ServiceDescriptor,
    pub(super) server_max_frame: u32,
    /// The limits each method's results decode under.
    pub(super) results_plan: Plan,
    pub(super) stream_window: u32,
    /// Reads replies; stopped with the last handle, whatever the server does. `None` for a
    /// server's handle to its client's callbacks: the server's connection reads for it.
    pub(super) reader_task: Option<AbortHandle>,
    /// The connection also serves calls of its peer, whose limit grows with this side's calls
    /// in flight: each call wakes the task that reads.
    pub(super) wake_on_call: bool,
    /// How this client's methods bind to the server's.
    pub(super) binding: Binding,
    /// The deadline of the calls of handles made from the connection (a callback's
    /// [`crate::CallContext::callbacks`]): the client's [`crate::ClientConfig::default_timeout`].
    pub(super) default_timeout: Option<Duration>,
}

impl Shared {
    /// Tells the server to drop call `id`. Its argument stream, if it has one, sends nothing
    /// more: the server forgets the stream with the call, and an item after the cancel would
    /// be one of a stream that is not open.
    pub(super) fn cancel(&self, id: u64) {
        let upload = self.conn.lock().outgoing.get(&id).cloned();
        let gate = upload.as_ref().map(|upload| upload.close());
        // Behind the stream's items, which it must not overtake.
        let _ = self
            .outbox
            .send_bulk_one(Encoded::One(header_frame(&Header::Cancel { id })));
        drop(gate);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(reader_task) = &self.reader_task else {
            return;
        };
        // The last handle is gone, so no call waits: tell the server, so it closes the
        // connection even where the transport cannot half-close (a pipe's write end closes only
        // with its read end), and stop reading. The writer task writes the goodbye and closes
        // the sending direction once the outbox is dropped.
        let _ = self.outbox.send(header_frame(&Header::Goodbye {
            reason: GoodbyeReason::ShuttingDown,
        }));
        self.conn.released.store(true, Ordering::Release);
        reader_task.abort();
    }
}

/// An untyped, connected client: the engine under every generated client.
///
/// Cheap to clone (an `Arc`); clones share the connection. The connection closes when the last
/// clone is dropped.
#[derive(Clone)]
pub struct ClientHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) timeout: Option<Duration>,
    /// A deadline no call through this handle goes past: the one of the call a callback
    /// handle was taken in.
    pub(super) deadline: Option<Instant>,
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
    /// A handle to the same connection whose calls have deadline `timeout` from their start
    /// (`None`: no deadline).
    #[must_use]
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            timeout,
            deadline: self.deadline,
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

    /// How the method named `method` binds to the server's: [`MethodBinding::Bound`] if the
    /// server has it with the same shapes (always, when client and server have the same
    /// interface), else why calling it fails at once. `None` if this client has no such
    /// method.
    pub fn binding(&self, method: &str) -> Option<MethodBinding> {
        let method = self.shared.service.method_named(method)?;
        Some(self.shared.binding.of(method.id))
    }

    /// Whether the server has the method named `method` with the same shapes as this client:
    /// whether it can be called.
    pub fn supports(&self, method: &str) -> bool {
        self.binding(method) == Some(MethodBinding::Bound)
    }

    /// Whether the connection is closed (every call would fail).
    pub fn is_closed(&self) -> bool {
        self.shared.conn.lock().closed.is_some()
    }

    /// Waits until the connection is closed (the peer went away, the transport failed, or the
    /// server shut down): for a GUI that shows the connection's state, or a server that keeps
    /// handles to its clients' callbacks and must forget those that left.
    pub async fn closed(&self) {
        self.shared.conn.until_closed().await;
    }

    /// Calls a method whose result is a plain `T`. While more than 1 MiB of this side's calls
    /// wait to be written (a peer that does not read), the call first waits for the writer to
    /// catch up, within its deadline.
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
        self.value(method, &reply)
    }

    /// The value of a reply to `method`, whose result is a plain `T`.
    pub(super) fn value<T: DeserializeOwned>(
        &self,
        method: &MethodDescriptor,
        reply: &Reply,
    ) -> Result<T, RpcError> {
        match &reply.status {
            ReplyStatus::Ok => self.decode(reply, &self.limits_for(method)),
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
        self.fallible(method, &reply)
    }

    /// The value or typed error of a reply to `method`, declared as returning `Result<T, E>`.
    pub(super) fn fallible<T, E>(
        &self,
        method: &MethodDescriptor,
        reply: &Reply,
    ) -> Result<Result<T, E>, RpcError>
    where
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let limits = self.limits_for(method);
        match &reply.status {
            ReplyStatus::Ok => self.decode(reply, &limits).map(Ok),
            ReplyStatus::AppError => self.decode(reply, &limits).map(Err),
            ReplyStatus::Failed(e) => Err(remote_error(e.clone())),
        }
    }

    /// A request id not in use on this connection.
    pub(super) fn next_id(&self) -> u64 {
        self.shared.conn.issue_id()
    }

    /// Sends a one-way call. Returns once the call is queued for sending: there is no reply, and
    /// the server's handler may still be running (or may never run if the connection drops).
    /// While more than 1 MiB of this side's calls wait to be written (a peer that does not
    /// read), it first waits for the writer to catch up, within the handle's deadline.
    ///
    /// # Errors
    ///
    /// [`RpcError::ConnectionClosed`] (or the error that closed it) if the connection is gone,
    /// [`RpcError::Encode`] or [`RpcError::RequestTooLarge`] if the arguments cannot be sent,
    /// [`RpcError::DeadlineExceeded`] if the deadline passed while it waited (nothing was sent).
    pub async fn notify<A>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<(), RpcError>
    where
        A: Serialize + ?Sized,
    {
        debug_assert_eq!(method.kind, MethodKind::Oneway);
        self.shared.binding.check(method)?;
        let frame = self.encode(&Header::Notify { method: method.id }, args)?;
        tracing::trace!(
            service = self.shared.service.name,
            method = method.name,
            "notify"
        );
        self.send_one_way(frame).await
    }

    /// Sends the frame of a one-way call, once there is room for it (see
    /// [`ClientHandle::notify`]).
    pub(super) async fn send_one_way(&self, frame: Encoded) -> Result<(), RpcError> {
        self.check_open()?;
        if self.shared.outbox.unsent_calls() > MAX_UNSENT_CALLS {
            self.room_for_calls(self.call_deadline(Instant::now()).0)
                .await?;
        }
        self.shared
            .outbox
            .send_encoded(frame, false)
            .map_err(|_| self.closed_error())
    }

    /// Waits while more than [`MAX_UNSENT_CALLS`] bytes of this side's calls wait to be written
    /// (a peer that does not read), within `deadline`; so that a loop of calls, or of one-way
    /// calls, cannot queue without end.
    async fn room_for_calls(&self, deadline: Option<Instant>) -> Result<(), RpcError> {
        let drained = self.shared.outbox.calls_drained_to(MAX_UNSENT_CALLS);
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, drained)
                .await
                .map_err(|_| RpcError::DeadlineExceeded)?,
            None => drained.await,
        }
        self.check_open()
    }

    /// The deadline of a call made at `now` on this handle, and the time left until it: the
    /// nearer of its timeout and its absolute deadline, if it has either.
    fn call_deadline(&self, now: Instant) -> (Option<Instant>, Option<Duration>) {
        let mut deadline = self.timeout.and_then(|t| now.checked_add(t));
        let mut timeout = self.timeout;
        if let Some(limit) = self.deadline {
            if deadline.is_none_or(|d| limit < d) {
                deadline = Some(limit);
                timeout = Some(limit.saturating_duration_since(now));
            }
        }
        (deadline, timeout)
    }

    /// The limits the results of `method` decode under: without the guard if their type
    /// cannot exceed them.
    pub(super) fn limits_for(&self, method: &MethodDescriptor) -> DecodeLimits {
        self.shared.results_plan.of(self.shared.service, method.id)
    }

    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        reply: &Reply,
        limits: &DecodeLimits,
    ) -> Result<T, RpcError> {
        crate::byte_buf::sharing(&reply.frame, || decode::from_slice(reply.body(), limits))
            .map_err(RpcError::Decode)
    }

    /// Decodes a stream's item: as [`ClientHandle::decode`], sharing the frame it arrived in
    /// if it was kept.
    pub(super) fn decode_item<T: DeserializeOwned>(
        &self,
        item: &crate::stream::arrived::Item<'_>,
        limits: &DecodeLimits,
    ) -> Result<T, RpcError> {
        let decode = || decode::from_slice(item.body, limits);
        match item.frame {
            Some(frame) => crate::byte_buf::sharing(frame, decode),
            None => decode(),
        }
        .map_err(RpcError::Decode)
    }

    pub(super) fn encode<A: Serialize + ?Sized>(
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

    pub(super) fn closed_error(&self) -> RpcError {
        self.shared
            .conn
            .lock()
            .closed
            .clone()
            .unwrap_or(RpcError::ConnectionClosed)
    }

    pub(super) fn check_open(&self) -> Result<(), RpcError> {
        if self.shared.conn.shutting_down.load(Ordering::Acquire) {
            return Err(RpcError::ShuttingDown);
        }
        match &self.shared.conn.lock().closed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    pub(super) fn request<'a, A: Serialize + ?Sized>(
        &'a self,
        method: &'a MethodDescriptor,
        args: &'a A,
    ) -> impl Future<Output = Result<Reply, RpcError>> + 'a {
        self.request_with(self.next_id(), method, args, None)
    }

    /// Sends call `id` and waits for its reply. A plain function returning the call's
    /// future, rather than an `async fn` around it, so that the future a caller holds has one
    /// layer less (callers keep many of them: a future's size is copied when it is moved).
    pub(super) fn request_with<'a, A: Serialize + ?Sized>(
        &'a self,
        id: u64,
        method: &'a MethodDescriptor,
        args: &'a A,
        stream_window: Option<u32>,
    ) -> impl Future<Output = Result<Reply, RpcError>> + 'a {
        let shared = &self.shared;
        let span = tracing::debug_span!(
            "rpc.call",
            service = shared.service.name,
            method = method.name,
            id
        );
        async move {
            shared.binding.check(method)?;
            let started = Instant::now();
            let (deadline, mut timeout) = self.call_deadline(started);
            if shared.outbox.unsent_calls() > MAX_UNSENT_CALLS {
                // Boxed: the wait is rare, and the future of every call stays small.
                Box::pin(self.room_for_calls(deadline)).await?;
                // The server gets what is left of the deadline.
                timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            }
            let frame = self.encode(
                &Header::Call {
                    id,
                    method: method.id,
                    deadline_us: timeout.map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
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
            if deadline_moved || shared.wake_on_call {
                shared.conn.deadline_moved.notify();
            }
            let mut guard = InFlight {
                shared,
                id,
                armed: true,
            };
            // The only call in flight is written at once; calls that follow others are queued,
            // so that they go out together (by the writer task, or by the caller that finds
            // eight of them waiting).
            let sent = if stream_window.is_none() && !method.takes_stream {
                shared.outbox.send_encoded(frame, alone)
            } else {
                let mut frames = Vec::with_capacity(2);
                frame.push_into(&mut frames);
                if let Some(window) = stream_window {
                    // The first credit goes with the call, in the same write: the server sends
                    // nothing before it, and a write between the two could find the connection
                    // gone and fail a call the server has already answered.
                    frames.push(header_frame(&Header::Credit {
                        stream: id,
                        bytes: window,
                    }));
                }
                // Behind the stream frames queued before it, among them maybe the cancel of a
                // stream that the server counts against its limit until it arrives.
                shared.outbox.send_opening(frames, alone)
            };
            if sent.is_err() {
                guard.armed = false;
                shared.conn.lock().calls.remove(&id);
                return Err(self.closed_error());
            }
            // The reader task fails the call when its deadline passes.
            let received = std::future::poll_fn(|cx| shared.conn.poll_outcome(id, cx)).await;
            if let Err(RpcError::DeadlineExceeded) = &received {
                tracing::debug!("deadline exceeded");
                shared.cancel(id);
            }
            guard.armed = false;
            let reply = received?;
            tracing::trace!(elapsed_us = started.elapsed().as_micros() as u64, "reply");
            Ok(reply)
        }
        .instrument(span)
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
            self.shared.cancel(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::frame::{FrameRead, FrameWrite};
    use crate::memory;
    use crate::protocol::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
    use crate::service::{MethodDescriptor, MethodKind, ServiceDescriptor};
    use crate::ClientConfig;

    static METHODS: [MethodDescriptor; 1] = [MethodDescriptor {
        id: 0,
        name: "wait",
        takes_stream: false,
        kind: MethodKind::Call,
        idempotent: false,
    }];

    static SERVICE: ServiceDescriptor = ServiceDescriptor {
        name: "Silent",
        methods: &METHODS,
        callbacks: None,
        schema: silent_schema,
    };

    fn silent_schema() -> &'static crate::schema::ServiceSchema {
        static SCHEMA: std::sync::OnceLock<crate::schema::ServiceSchema> =
            std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| crate::schema::SchemaBuilder::new("Silent", None).finish())
    }

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
