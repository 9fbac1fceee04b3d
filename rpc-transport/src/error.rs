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
        reason: NameProblem,
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
    /// The server runs as another user than this client's (or the system's, which is trusted
    /// too: root on Unix, SYSTEM on Windows); nothing was sent to it.
    #[error("server on {endpoint} runs as {actual}, not as {expected} or the system")]
    UntrustedServer {
        /// The endpoint.
        endpoint: String,
        /// This client's user, whom the server was expected to run as.
        expected: User,
        /// The user the server runs as.
        actual: User,
    },
    /// The directory that holds endpoints is not private to this user, or the endpoint's file
    /// in it is a symbolic link.
    #[error("endpoint directory {path} is not safe: {reason}")]
    InsecureDirectory {
        /// The directory, or the endpoint's file in it.
        path: String,
        /// What is wrong with it.
        reason: UnsafeDirectory,
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

/// What is wrong with an endpoint name ([`ConnectError::InvalidName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than 64 bytes.
    TooLong,
    /// The name starts with a dot.
    LeadingDot,
    /// The name has a character other than ASCII letters, digits, `.`, `_` and `-`.
    BadCharacter,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "empty",
            NameProblem::TooLong => "longer than 64 bytes",
            NameProblem::LeadingDot => "starts with a dot",
            NameProblem::BadCharacter => "only ASCII letters, digits, '.', '_' and '-' are allowed",
        })
    }
}

/// What makes an endpoint directory unsafe ([`ConnectError::InsecureDirectory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeDirectory {
    /// The directory is a symbolic link.
    Symlink,
    /// The path is not a directory.
    NotADirectory,
    /// The directory is owned by another user.
    OtherOwner,
    /// Group or others have access to the directory.
    OpenToOthers,
    /// The endpoint's socket, or one of its FIFOs, is a symbolic link.
    EndpointIsSymlink,
}

impl std::fmt::Display for UnsafeDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnsafeDirectory::Symlink => "it is a symbolic link",
            UnsafeDirectory::NotADirectory => "it is not a directory",
            UnsafeDirectory::OtherOwner => "it is owned by another user",
            UnsafeDirectory::OpenToOthers => "it is accessible to other users",
            UnsafeDirectory::EndpointIsSymlink => "the endpoint is a symbolic link",
        })
    }
}

/// A user, as the system names it ([`ConnectError::UntrustedServer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum User {
    /// A Unix user id.
    Uid(u32),
    /// A Windows security identifier (`S-1-5-...`).
    Sid(String),
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            User::Uid(uid) => write!(f, "uid {uid}"),
            User::Sid(sid) => f.write_str(sid),
        }
    }
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
