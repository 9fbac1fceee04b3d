//! The server engine: serves one connection of a service.
//!
//! [`serve_connection`] performs the handshake, then reads calls and answers them. The
//! execution model:
//!
//! * **Handlers run in parallel.** Each call's handler is polled once, in place, by the
//!   connection's task; a handler that finishes there (it never waits) is answered at once,
//!   with no task or timer. A handler still pending after that first poll moves to a task of
//!   its own, so one slow or computing handler does not hold up the other calls of its
//!   connection, nor the reading of new ones. A handler that blocks its thread *before* its
//!   first `.await` holds up its connection's task for that long (other connections go on, on
//!   other worker threads): put blocking work in `tokio::task::spawn_blocking`.
//! * **One-way calls take effect in the order sent.** The one-way handlers of a connection run
//!   one after another: the next starts once the previous one has finished (each still on its
//!   own task if it waits). Their order relative to calls is not defined.
//! * **Replies go out as handlers finish**, in any order; replies that are ready together go
//!   out together (a few to a write).
//! * **Cancellation and deadlines**: a handler is dropped when its caller cancels, when its
//!   deadline passes, or when the client goes away. One-way calls received run to completion,
//!   also those still waiting their turn when the client goes away (the connection's slot is
//!   held until the last has run): a message sent is a message handled.
//! * **Bounded**: at most [`ServerConfig::max_in_flight`] handlers (calls and queued one-way
//!   calls) per connection, and replies waiting to be written past
//!   [`ServerConfig::max_unsent_bytes`] stop the reading of new calls: excess calls wait in the
//!   transport and none is dropped. A frame once started must complete within
//!   [`ServerConfig::frame_timeout`]. While it does not read, the connection still watches for
//!   the client leaving (on transports that can tell, such as Unix sockets), and drops the
//!   handlers of the client's calls at once when it does; what the client sent before it left
//!   is still read, as handlers finish, for its one-way calls.
//!
//! The transport's server loop calls [`serve_connection`] once per accepted connection.

mod call;
mod config;
mod connection;
mod handshake;
mod serving;
mod streams;

pub(crate) use call::Calls;
pub use config::ServerConfig;
pub use connection::serve_connection;
pub use handshake::{refuse_connection, turn_away_shutting_down};
pub(crate) use serving::Serving;

use crate::error::ProtocolError;
use crate::frame::FrameError;
use crate::protocol::Rejection;

/// Why a server connection ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// No hello arrived within the handshake timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The client's hello was refused.
    #[error("handshake rejected")]
    Rejected(#[source] Rejection),
    /// The client sent a bad frame, a frame that stalled ([`FrameError::Stalled`]), or the
    /// transport failed.
    #[error("transport failed")]
    Frame(#[source] FrameError),
    /// The client broke the protocol.
    #[error("protocol violation")]
    Protocol(#[source] ProtocolError),
}
