//! Where the bytes travel: named endpoints on Unix domain sockets and Windows named pipes.
//!
//! A service is served on a *name* and clients connect by the same name; the name maps to the
//! platform's place for it:
//!
//! * **Unix**: a socket `<dir>/<name>.sock` in a directory private to the user:
//!   `$XDG_RUNTIME_DIR/rpc`, else `<temp dir>/rpc-<uid>`, created with mode 0700 and checked
//!   to be a real directory (not a symlink) owned by the user and closed to everyone else. The
//!   socket is created with mode 0600 before it can be reached. A lock file `<name>.lock` beside
//!   it decides who owns the name: a second server on a live name fails with
//!   [`BindError::AddrInUse`]; a socket left by a dead server is removed and replaced. The
//!   Linux abstract namespace is never used: it has no permissions. Clients check that the
//!   server runs as their own user (or root) before sending anything.
//! * **Windows**: a named pipe `\\.\pipe\rpc-<name>` in message mode (see the
//!   `sys/windows` module documentation of this crate's source).
//!
//! Any two one-way pipes make a connection too: [`pipes`] serves and connects over a reader and
//! a writer, and [`child`] runs a service in a child process over its stdin/stdout or over two
//! inherited anonymous pipes, supervising the child.
//!
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct Calc;
//! # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Server process: serves until Ctrl-C, then shuts down gracefully.
//! rpc_transport::serve("calculator", CalculatorServer::new(Calc)).await?;
//!
//! // Client process:
//! let calc: CalculatorClient = rpc_transport::connect("calculator").await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! # Ok(()) }
//! ```

pub mod blocking;
pub mod child;
mod endpoint;
mod error;
mod limits;
pub mod pair;
pub mod pipes;
mod server;
pub mod session;
mod sys;
#[cfg(unix)]
pub mod unix;
#[cfg(windows)]
pub mod windows;

pub use endpoint::Endpoint;
pub use error::{BindError, ConnectError, NameProblem, UnsafeDirectory, User};
pub use server::{serve, Server};

use rpc_core::protocol::Rejection;
use rpc_core::{Client, ClientConfig, RpcError};

/// Connects to the service served on `name` with default settings.
///
/// # Errors
///
/// [`ConnectError::NotFound`] if no server is listening, [`ConnectError::Busy`] if it serves
/// as many connections as it may, [`ConnectError::PermissionDenied`],
/// [`ConnectError::UntrustedServer`] if the server runs as another user, another variant of
/// [`ConnectError`] if the name is invalid or the endpoint cannot be reached;
/// [`ConnectError::Handshake`] if the server serves another service, speaks another protocol
/// version or expects other callbacks ([`rpc_core::RpcError::Rejected`]), is shutting down
/// ([`rpc_core::RpcError::ClosedByPeer`]), or the connection fails during the handshake.
/// Another version of the same service is welcomed: its methods
/// bind one by one (see [`rpc_core::MethodBinding`]).
pub async fn connect<C: Client>(name: &str) -> Result<C, ConnectError> {
    connect_with(&Endpoint::new(name)?, &ClientConfig::default()).await
}

/// Connects to the service served on `name`, serving `callbacks` (a generated
/// `<Trait>Server`) on the connection for a service declared with
/// `#[service(callbacks = Trait)]`: the server calls them back while it handles this client's
/// calls. Other settings are the defaults; [`ClientConfig::serve_callbacks`] sets callbacks
/// with other settings, for every transport.
///
/// # Errors
///
/// As [`connect`]; [`ConnectError::Handshake`] with [`RpcError::CallbacksMismatch`] if
/// `callbacks` is not the service the server calls back (nothing is sent then).
pub async fn connect_with_callbacks<C: Client>(
    name: &str,
    callbacks: impl rpc_core::Dispatch,
) -> Result<C, ConnectError> {
    let mut config = ClientConfig::default();
    config.serve_callbacks(callbacks);
    connect_with(&Endpoint::new(name)?, &config).await
}

/// Connects to whatever service is served on `endpoint`, without knowing its interface: for
/// tools (the `rpc` command) that ask it what it is ([`rpc_core::ClientHandle::describe`])
/// and call it with arguments they encode themselves ([`rpc_core::ClientHandle::call_raw`]).
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_any(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<rpc_core::ClientHandle, ConnectError> {
    let (reader, writer) = sys::connect(endpoint, config).await?;
    rpc_core::ClientHandle::connect_any(reader, writer, config)
        .await
        .map_err(|error| handshake_error(endpoint, error))
}

/// The names of the endpoints served on this machine that this user can reach by name: on
/// Unix the sockets in the user's private directory, on Windows the named pipes of this
/// framework, every user's (a pipe's owner is known only by connecting). Pipe pairs are not
/// listed. A name may belong to a server that has died (its socket left behind): connecting
/// tells.
///
/// # Errors
///
/// [`ConnectError::Io`] if the directory cannot be read. A directory that does not exist yet
/// gives no names.
pub fn list_endpoints() -> Result<Vec<String>, ConnectError> {
    sys::list_endpoints()
}

/// Connects to the service served on `endpoint` with the settings of `config`.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with<C: Client>(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<C, ConnectError> {
    let (reader, writer) = sys::connect(endpoint, config).await?;
    rpc_core::connect(reader, writer, config)
        .await
        .map_err(|error| handshake_error(endpoint, error))
}

/// The error of a handshake with the server on `endpoint`: a server at its limit of
/// connections is [`ConnectError::Busy`], as a Windows pipe with no free instance is.
pub(crate) fn handshake_error(endpoint: &Endpoint, error: RpcError) -> ConnectError {
    match error {
        RpcError::Rejected(Rejection::ServerBusy { .. }) => ConnectError::Busy {
            endpoint: endpoint.to_string(),
        },
        error => ConnectError::Handshake(error),
    }
}
