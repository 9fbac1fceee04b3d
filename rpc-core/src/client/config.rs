//! The settings of a client: one struct for the engine and the transports' connect functions.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::DecodeLimits;
use crate::protocol::{DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT};
use crate::service::Dispatch;
use crate::stream::credit::{clamp_window, DEFAULT_WINDOW};

/// Settings of a client connection.
///
/// Every setting has a safe default; setters take `&mut self` and return it, so settings chain
/// on a temporary passed by reference:
///
/// ```
/// # use std::time::Duration;
/// let mut config = rpc_core::ClientConfig::new();
/// config.default_timeout(Some(Duration::from_secs(2))).max_frame(1 << 20);
/// assert_eq!(config.get_default_timeout(), Some(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) callbacks: Option<Callbacks>,
    pub(crate) max_callbacks_in_flight: usize,
    pub(crate) max_frame: u32,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) frame_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) child_exit_grace: Duration,
    pub(crate) stream_window: u32,
    pub(crate) decode_limits: DecodeLimits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            callbacks: None,
            max_callbacks_in_flight: 32,
            max_frame: DEFAULT_MAX_FRAME,
            default_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            child_exit_grace: Duration::from_secs(5),
            stream_window: DEFAULT_WINDOW,
            decode_limits: DecodeLimits::default(),
        }
    }
}

/// The callback service a client serves, shared by its connections.
#[derive(Clone)]
pub(crate) struct Callbacks(pub(crate) Arc<dyn Dispatch>);

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Callbacks")
            .field(&self.0.descriptor().name)
            .finish()
    }
}

impl ClientConfig {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `callbacks` (a generated `<Trait>Server`) on each connection made with this
    /// configuration: the calls the server makes back to this client. Required for a service
    /// declared with `#[service(callbacks = Trait)]`, and it must be that trait's server;
    /// connecting otherwise fails with [`crate::RpcError::CallbacksMismatch`] before anything is
    /// sent. Callbacks run as a server's handlers do (each on its own task once it waits),
    /// with [`ClientConfig::max_callbacks_in_flight`] as their limit; their methods cannot open
    /// streams. Their replies that the server has not taken yet are bounded as a server's are
    /// (1 MiB, the default of [`crate::ServerConfig::max_unsent_bytes`]): past it, the client
    /// stops reading from the server until they drain.
    pub fn serve_callbacks(&mut self, callbacks: impl Dispatch) -> &mut Self {
        self.callbacks = Some(Callbacks(Arc::new(callbacks)));
        self
    }

    /// Sets how many callbacks from the server may run at once on one connection. Default 32.
    /// Past it the client stops reading from the server until one finishes, except that each
    /// call of this client still waiting for its reply lends a slot (at most as many again),
    /// so that a callback that calls the server, which calls back, does not deadlock. A server
    /// that leaves meanwhile is seen gone at once on transports that tell when the other end
    /// closes without reading (Unix sockets, Windows named pipes; on others when a callback
    /// finishes): what it sent before is still read (replies, stream items, one-way calls,
    /// which run), the calls that wait for a reply are not started. Once the server is gone,
    /// the handlers of its calls are dropped, and its one-way calls run to their end, also
    /// those waiting their turn (as a server runs those of a client that leaves); dropping the
    /// client's last handle stops them all. Zero is taken as one: a client that serves
    /// callbacks runs at least one.
    pub fn max_callbacks_in_flight(&mut self, callbacks: usize) -> &mut Self {
        self.max_callbacks_in_flight = callbacks.max(1);
        self
    }

    /// How many callbacks from the server may run at once on one connection.
    pub fn get_max_callbacks_in_flight(&self) -> usize {
        self.max_callbacks_in_flight
    }

    /// Sets the largest frame accepted from the server, in bytes. Default 16 MiB; at most
    /// [`MAX_FRAME_LIMIT`](crate::protocol::MAX_FRAME_LIMIT) (256 MiB less 64 bytes: a stream
    /// item must not cost more credit than the largest window), larger values are clamped. The
    /// server learns it in the handshake and fails a call whose result would be larger.
    pub fn max_frame(&mut self, bytes: u32) -> &mut Self {
        self.max_frame = bytes.min(MAX_FRAME_LIMIT);
        self
    }

    /// Sets the deadline of every call, counted from its start (`None`: no deadline). Default
    /// 30 s. A handle re-timed with `with_timeout` overrides it for its calls.
    pub fn default_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets how long the handshake may take. Default 10 s.
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how long a frame from the server may take to arrive once its first bytes have.
    /// Default 10 s, as the server's [`crate::ServerConfig::frame_timeout`]. A server that starts
    /// a frame and stalls closes the connection with
    /// [`FrameError::Stalled`](crate::frame::FrameError::Stalled), which every call and stream on
    /// it then reports, rather than holding open a stream that no item can reach. Time the
    /// client spends not reading (its callbacks at their limit) does not count. Every
    /// transport reads frames as a byte stream and keeps it (Windows pipes too), except the
    /// in-memory one, which hands over whole frames and has none that could stall.
    pub fn frame_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.frame_timeout = timeout;
        self
    }

    /// Sets how long connecting keeps retrying an endpoint that is busy (every instance of a
    /// Windows pipe taken, a pipe pair serving another client, on Linux the queue of a Unix
    /// socket's connections waiting to be accepted full). Default 5 s.
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a child process serving this client (`rpc_transport::child`) may take to
    /// exit once the client's last handle is dropped (its input is closed) before it is
    /// killed. Default 5 s. Other connections ignore it.
    pub fn child_exit_grace(&mut self, grace: Duration) -> &mut Self {
        self.child_exit_grace = grace;
        self
    }

    /// Sets how many bytes of a stream from the server may be on their way or waiting to be
    /// taken, each item counted as its frame's length on the wire plus
    /// [`STREAM_ITEM_OVERHEAD`](crate::protocol::STREAM_ITEM_OVERHEAD) (64): the server starts no
    /// item once this much is unclaimed, until the receiver takes some (credit flow control).
    /// Default 1 MiB; at least 1 byte, at most 256 MiB (larger values are clamped). A receiver
    /// that stops taking items holds at most this much plus one item here (in memory, at most
    /// eight times that: an item kept as a view of the buffer it was read into keeps at most
    /// eight times its length of it alive; items up to 8 KiB are copied); the server holds
    /// none of it.
    pub fn stream_window(&mut self, bytes: u32) -> &mut Self {
        self.stream_window = clamp_window(bytes);
        self
    }

    /// Sets how deeply decoded replies may nest. Default 128 levels; deeper replies fail the
    /// call with a typed error.
    pub fn max_decode_depth(&mut self, depth: u32) -> &mut Self {
        self.decode_limits.max_depth = depth;
        self
    }

    /// The largest frame accepted from the server.
    pub fn get_max_frame(&self) -> u32 {
        self.max_frame
    }

    /// The deadline of every call.
    pub fn get_default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// How long the handshake may take.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// How long a frame from the server may take to arrive once its first bytes have.
    pub fn get_frame_timeout(&self) -> Duration {
        self.frame_timeout
    }

    /// How long connecting keeps retrying a busy endpoint.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long a child process may take to exit after its client is dropped.
    pub fn get_child_exit_grace(&self) -> Duration {
        self.child_exit_grace
    }
}
