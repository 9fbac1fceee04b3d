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
//! * **Windows**: a named pipe `\\.\pipe\rpc-<name>` in message mode (see the `windows`
//!   module documentation of this crate's source).
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

pub mod child;
mod endpoint;
#[cfg(unix)]
pub mod fifo;
#[cfg(windows)]
#[path = "fifo_windows.rs"]
pub mod fifo;
pub mod pipes;
mod server;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

pub use endpoint::Endpoint;
pub use server::{serve, BindError, Server, ServerOptions};

use rpc_core::{Client, ClientConfig, ClientHandle, RpcError};

/// Settings of a client connection to a named endpoint.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Settings of the connection itself (deadlines, frame size, handshake timeout).
    pub config: ClientConfig,
    /// How long to keep retrying while every instance of a Windows pipe is busy. Default 5 s.
    /// Unused on Unix, where the kernel queues connections.
    pub busy_timeout: Option<std::time::Duration>,
}

impl ClientOptions {
    /// Sets the settings of the connection.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets how long to wait for a busy Windows pipe.
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }
}

/// Connects to the service served on `name` with default options.
///
/// # Errors
///
/// [`RpcError::Connect`] if there is no server, access is denied, the server runs as another
/// user, or the name is invalid; [`RpcError::Rejected`] if the server serves another service or
/// another version of it; any other [`RpcError`] if the connection fails during the handshake.
pub async fn connect<C: Client>(name: &str) -> Result<C, RpcError> {
    connect_with(&Endpoint::new(name)?, &ClientOptions::default()).await
}

/// Connects to the service served on `endpoint`.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with<C: Client>(
    endpoint: &Endpoint,
    options: &ClientOptions,
) -> Result<C, RpcError> {
    let (reader, writer) = platform::connect(endpoint, options).await?;
    let handle = ClientHandle::connect(reader, writer, C::SERVICE, &options.config).await?;
    Ok(C::from_handle(handle))
}
