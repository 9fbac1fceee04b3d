//! The settings of a server: one struct for the engine and the transports' server loops.

use std::time::Duration;

use crate::decode::DecodeLimits;
use crate::protocol::{DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT};
use crate::stream::credit::{clamp_window, DEFAULT_WINDOW};

/// Settings of a server and of each connection it serves.
///
/// Every setting has a safe default; setters take `&mut self` and return it, so settings chain
/// on a temporary passed by reference:
///
/// ```
/// # use std::time::Duration;
/// let mut config = rpc_core::ServerConfig::new();
/// config.max_in_flight(16).handshake_timeout(Duration::from_secs(2));
/// assert_eq!(config.get_max_in_flight(), 16);
/// ```
///
/// What a peer can make the server hold is bounded by these settings: per connection at most
/// [`max_in_flight`](Self::max_in_flight) handlers (each its own task once it waits; twice
/// that for a service with callbacks, plus one per open stream: see the setter), replies
/// waiting to be written up to [`max_unsent_bytes`](Self::max_unsent_bytes) (then the server
/// stops reading) plus those of the handlers still running, and one frame of at most
/// [`max_frame`](Self::max_frame) bytes being read, which must complete within
/// [`frame_timeout`](Self::frame_timeout); per server at most
/// [`max_connections`](Self::max_connections) connections.
///
/// These are counts, and the worst case of a connection is their product: each handler holds
/// its arguments, decoded from a frame of up to `max_frame` bytes (decoded values can take
/// more memory than their encoding: a `Vec<String>` about 24 bytes an element, whatever the
/// string), and each stream from the client up to its window and one item. At the defaults a
/// connection that sends frames of the largest size to handlers that wait can make the server
/// hold gigabytes; a server that takes large values from clients it does not trust lowers
/// `max_frame`, `max_in_flight` or `max_streams`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) max_frame: u32,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) decode_limits: DecodeLimits,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_user: Option<usize>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) frame_timeout: Duration,
    pub(crate) max_unsent_bytes: usize,
    pub(crate) max_streams: usize,
    pub(crate) stream_window: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            max_in_flight: 128,
            decode_limits: DecodeLimits::default(),
            max_connections: 256,
            max_connections_per_user: None,
            shutdown_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            max_unsent_bytes: 1024 * 1024,
            max_streams: 64,
            stream_window: DEFAULT_WINDOW,
        }
    }
}

impl ServerConfig {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest frame accepted from a client, in bytes. Default 16 MiB; at most
    /// [`MAX_FRAME_LIMIT`](crate::protocol::MAX_FRAME_LIMIT) (256 MiB less 64 bytes: a stream
    /// item must not cost more credit than the largest window), larger values are clamped. The
    /// client learns it in the handshake and refuses to send larger calls.
    pub fn max_frame(&mut self, bytes: u32) -> &mut Self {
        self.max_frame = bytes.min(MAX_FRAME_LIMIT);
        self
    }

    /// Sets the time a client has to complete its handshake. Default 5 s.
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many handlers may run at once for one connection (calls and queued one-way
    /// calls). Default 128. Calls with an open stream, either way, do not count: they have
    /// their own limit, [`ServerConfig::max_streams`]. At the limit the server stops reading
    /// from that connection: further calls wait in the transport, none is dropped. For a
    /// service with callbacks, each callback waiting for the client's reply lends one more
    /// slot, at most this many again, so that a client's callback that calls the server back is
    /// served: calls nest up to twice this limit deep, and one connection runs at most twice
    /// this many handlers, plus one per open stream.
    ///
    /// # Panics
    ///
    /// If `calls` is zero.
    #[track_caller]
    pub fn max_in_flight(&mut self, calls: usize) -> &mut Self {
        assert!(calls > 0, "max_in_flight must be at least 1");
        self.max_in_flight = calls;
        self
    }

    /// Sets how deeply decoded arguments may nest. Default 128 levels; deeper arguments fail
    /// the call with a typed error (the handler does not run).
    pub fn max_decode_depth(&mut self, depth: u32) -> &mut Self {
        self.decode_limits.max_depth = depth;
        self
    }

    /// Sets how many connections a server on a named endpoint serves at once. Default 256;
    /// a client past the limit is refused at once (`ServerBusy`, which the transport's connect
    /// reports as busy), sixteen such refusals at a time; past those, its connection is closed
    /// without a word. On Windows a few more pipe instances always wait for the next clients.
    /// Each connection holds a descriptor (on Unix two: the socket and a copy that watches for
    /// the client's leaving), so the process's descriptor limit must leave room for twice this
    /// number.
    ///
    /// # Panics
    ///
    /// If `connections` is zero.
    #[track_caller]
    pub fn max_connections(&mut self, connections: usize) -> &mut Self {
        assert!(connections > 0, "max_connections must be at least 1");
        self.max_connections = connections;
        self
    }

    /// Sets how many connections one user may hold on an endpoint that lets other users in
    /// (`Endpoint::allow_other_users` in `rpc-transport`), so that one user cannot take every
    /// slot from the others. Default half of [`max_connections`](Self::max_connections). On a
    /// private endpoint every client is the server's own user, and only `max_connections`
    /// applies.
    ///
    /// # Panics
    ///
    /// If `connections` is zero.
    #[track_caller]
    pub fn max_connections_per_user(&mut self, connections: usize) -> &mut Self {
        assert!(
            connections > 0,
            "max_connections_per_user must be at least 1"
        );
        self.max_connections_per_user = Some(connections);
        self
    }

    /// Sets how long a graceful shutdown waits for calls in flight, and for their replies to
    /// be written to clients that read slowly, before closing their connections anyway.
    /// Default 10 s.
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets how long a frame may take to arrive once its first bytes have. Default 10 s, time
    /// for a 16 MiB frame at 1.6 MB/s. A client that starts a frame
    /// and stalls is disconnected ([`crate::frame::FrameError::Stalled`]); a client that
    /// sends nothing is not: idle connections stay open as long as the client wants. Time the
    /// server spends not reading on its own (at its in-flight limit, or while its replies wait
    /// to be written) does not count.
    pub fn frame_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.frame_timeout = timeout;
        self
    }

    /// Sets how many bytes of replies may wait to be written to one client before the server
    /// stops reading that client's calls. Default 1 MiB. A client that does not read its
    /// replies then gets backpressure: its calls wait in the transport, and what it costs the
    /// server stays within this setting, plus the replies of at most `max_in_flight` handlers
    /// that were running, plus one frame being read. The server's own calls to the client's
    /// callbacks are counted apart, against the same number: they do not stop the reading of
    /// the client's replies to callbacks while they are under it, and past it the server stops
    /// reading too. Stream frames are not counted: a result
    /// stream sends nothing while more than 256 KiB of frames wait on its connection, so each
    /// open stream adds at most one batch (64 KiB of items and the item that crosses it)
    /// beyond that.
    pub fn max_unsent_bytes(&mut self, bytes: usize) -> &mut Self {
        self.max_unsent_bytes = bytes;
        self
    }

    /// Sets how many streams one connection may have open at once, either way (a call that
    /// sends and receives counts once). Default 64. Opening one
    /// more fails that call with a typed error ([`crate::protocol::WireError::TooManyStreams`]);
    /// open streams do not count as calls in flight. Each holds at most one task (none for an
    /// upload whose call was answered on its first poll) and, while its client
    /// does not take items, no items: they wait in its client, within the client's stream
    /// window.
    pub fn max_streams(&mut self, streams: usize) -> &mut Self {
        self.max_streams = streams;
        self
    }

    /// Sets how many bytes of a stream from a client (an argument of type [`crate::Stream`]),
    /// each item counted as its frame's length on the wire plus
    /// [`STREAM_ITEM_OVERHEAD`](crate::protocol::STREAM_ITEM_OVERHEAD) (64), may be on their
    /// way or waiting for the handler. Default 1 MiB; at least 1 byte, at most 256 MiB (larger values are clamped). A
    /// client starts an item only while it holds credit, so a stream from a client costs the
    /// server at most this much plus one item (at most the maximum frame) while its handler
    /// does not take them (in memory, at most eight times that: an item kept as a view of the
    /// buffer it was read into keeps at most eight times its length of it alive; items in
    /// frames of up to 8 KiB are copied); a client that sends more breaks the protocol and is disconnected.
    pub fn stream_window(&mut self, bytes: u32) -> &mut Self {
        self.stream_window = clamp_window(bytes);
        self
    }

    /// How many bytes of a stream from a client may wait for the handler.
    pub fn get_stream_window(&self) -> u32 {
        self.stream_window
    }

    /// The largest frame accepted from a client.
    pub fn get_max_frame(&self) -> u32 {
        self.max_frame
    }

    /// The time a client has to complete its handshake.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// How many handlers may run at once for one connection.
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// How many connections a server serves at once.
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// How many connections one user may hold on an endpoint that lets other users in.
    pub fn get_max_connections_per_user(&self) -> usize {
        self.max_connections_per_user
            .unwrap_or(self.max_connections.div_ceil(2))
    }

    /// How long a graceful shutdown waits for calls in flight.
    pub fn get_shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}
