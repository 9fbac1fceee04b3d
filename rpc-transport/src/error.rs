//! The errors of reaching an endpoint: connecting to it and binding it.

use std::io;
use std::sync::Arc;

use rpc_core::RpcError;

/// Why connecting to a named endpoint failed: before any protocol was spoken, or in the
/// handshake.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The name is not valid for an endpoint.
    #[error("invalid endpoint name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No server listens on the name.
    #[error("no server is listening on {endpoint}")]
    NotFound {
        /// Where the client looked.
        endpoint: String,
    },
    /// The operating system refused access to the endpoint.
    #[error("access to {endpoint} denied")]
    PermissionDenied {
        /// The endpoint.
        endpoint: String,
    },
    /// The server is busy: it serves as many connections as it may (it said so), or every
    /// instance of the endpoint (a Windows pipe's, a pipe pair's one) stayed taken, or (on
    /// Linux) the queue of a Unix socket's connections waiting to be accepted stayed full, for
    /// the whole connect timeout.
    #[error("{endpoint} is busy")]
    Busy {
        /// The endpoint.
        endpoint: String,
    },
    /// The server runs as another user than expected; nothing was sent to it.
    #[error("server on {endpoint} runs as {actual}, expected {expected}")]
    UntrustedServer {
        /// The endpoint.
        endpoint: String,
        /// Who the server was expected to be.
        expected: String,
        /// Who it is.
        actual: String,
    },
    /// The directory that holds endpoints is not private to this user.
    #[error("endpoint directory {path} is not safe: {reason}")]
    InsecureDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting failed for another reason.
    #[error("connecting to {endpoint} failed")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The endpoint was reached, but the connection failed during the handshake: the server
    /// serves another service, speaks another protocol version or expects other callbacks
    /// ([`RpcError::Rejected`]), did not answer in time, closed, or does not speak the
    /// protocol.
    #[error("handshake failed")]
    Handshake(#[source] RpcError),
}

impl From<RpcError> for ConnectError {
    fn from(error: RpcError) -> Self {
        ConnectError::Handshake(error)
    }
}

/// Why a server could not take its endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The name is not a valid endpoint name, or the directory is not private.
    #[error(transparent)]
    Endpoint(#[from] ConnectError),
    /// Another live server holds the name.
    #[error("another server is already serving {name}")]
    AddrInUse {
        /// The name.
        name: String,
    },
    /// The socket path is a symbolic link; it is never followed or replaced.
    #[error("{path} is a symbolic link; refusing to use it")]
    SymlinkAtPath {
        /// The path.
        path: String,
    },
    /// Something that is not a socket sits at the socket path.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: String,
    },
    /// Something that is not a FIFO sits at one of a FIFO pair's paths.
    #[error("{path} exists and is not a FIFO")]
    NotAFifo {
        /// The path.
        path: String,
    },
    /// Creating the endpoint failed.
    #[error("binding {name} failed")]
    Io {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
