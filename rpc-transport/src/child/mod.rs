//! A service in a child process, over the child's stdin/stdout or over two inherited pipes.
//!
//! **Parent**: [`spawn`] starts a program with its stdin and stdout piped to a typed client
//! (its stderr stays the parent's, for logs); [`spawn_with_pipes`] leaves the child's stdio
//! alone and passes it two anonymous pipes instead. Both supervise the child:
//!
//! * when the child exits, calls in flight fail at once with [`RpcError::PeerExited`], which
//!   carries the exit status;
//! * when the last clone of the client is dropped, the child's input pipe is closed, the child
//!   is expected to exit, and it is killed if it has not within
//!   [`ClientConfig::child_exit_grace`](rpc_core::ClientConfig::child_exit_grace);
//! * a program that does not speak the protocol fails [`spawn`] with
//!   [`SpawnError::Handshake`], showing what it wrote instead, and is killed.
//!
//! **Child**: [`serve_stdio`] (or [`serve_inherited_pipes`]) serves a service to the parent and
//! returns when the parent goes away. Its stdin and stdout may be pipes or sockets (parents
//! built on libuv hand their children socket pairs); on Unix a file or a terminal works too, but
//! is read on tokio's blocking threads, and a read under way when the connection ends holds the
//! runtime's shutdown until it has data.
//!
//! # Keeping stdout clean
//!
//! Over stdio, the child's stdout *is* the connection: one stray `println!` would break it.
//! [`serve_stdio`] therefore takes the real stdout for itself and points the process's standard
//! output at its standard error (and standard input at the null device). From then on
//! `println!`, a logger that writes to stdout, or a C library's `printf` all land in the
//! parent's stderr, as logs, and cannot reach the connection. Anything printed *before*
//! [`serve_stdio`] runs is still a problem: the parent's [`spawn`] then fails with
//! [`rpc_core::ProtocolError::NotThisProtocol`], quoting the bytes it got. Call
//! [`serve_stdio`] first thing in `main`, before any output.
//!
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct Calc;
//! # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # async fn parent() -> Result<(), Box<dyn std::error::Error>> {
//! // Parent:
//! let mut command = tokio::process::Command::new("my-helper");
//! command.arg("--serve");
//! let (calc, child): (CalculatorClient, _) =
//!     rpc_transport::child::spawn(command, &Default::default()).await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! drop(calc); // closes the child's stdin; the child exits (or is killed after the grace period)
//! let status = child.wait().await;
//! # Ok(()) }
//! # async fn child() -> Result<(), rpc_transport::child::ChildServeError> {
//! // Child (`my-helper --serve`):
//! rpc_transport::child::serve_stdio(CalculatorServer::new(Calc)).await?;
//! # Ok(()) }
//! ```

use std::io;

use rpc_core::{ConnectionError, RpcError};
use tokio::io::{AsyncRead, AsyncWrite};

mod process;
mod serve;
mod spawn;

pub use process::ChildProcess;
pub use serve::{serve_inherited_pipes, serve_stdio, serve_stdio_with};
pub use spawn::{spawn, spawn_with_pipes};

/// The environment variable that tells a child started by [`spawn_with_pipes`] where its two
/// pipes are: `<read>,<write>` (file descriptors on Unix, handle values on Windows).
/// [`serve_inherited_pipes`] removes it from the environment, so the child's own children do
/// not inherit it.
pub const PIPES_ENV: &str = "RPC_CHILD_PIPES";

/// Why a child service could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The program could not be started (not found, not executable...), or its pipes could not
    /// be set up.
    #[error("could not start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The program started but did not complete the handshake; it has been killed. The cause
    /// says why: [`RpcError::PeerExited`] if it exited first (with its status),
    /// [`rpc_core::ProtocolError::NotThisProtocol`] if it wrote something else (quoted),
    /// [`RpcError::Rejected`] if it serves another service, [`RpcError::HandshakeTimeout`] if
    /// it said nothing.
    #[error("{program} did not complete the handshake")]
    Handshake {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: RpcError,
    },
}

/// Why serving the parent from a child process failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChildServeError {
    /// The process's stdin and stdout (or the inherited pipes) could not be set up for the
    /// connection.
    #[error("could not set up stdin and stdout (or the inherited pipes) for the connection")]
    Stdio(#[source] io::Error),
    /// [`PIPES_ENV`] is not set: the process was not started by [`spawn_with_pipes`].
    #[error("{PIPES_ENV} is not set: not started by spawn_with_pipes")]
    NoPipes,
    /// [`PIPES_ENV`] does not name two open pipes. Neither was taken, and nothing was closed.
    #[error("{PIPES_ENV}={value:?} does not name two inherited pipes: {reason}")]
    BadPipes {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: BadPipesReason,
    },
    /// The inherited pipes were already taken by an earlier call of [`serve_inherited_pipes`]
    /// in this process. Nothing was taken or closed.
    #[error("the inherited pipes were already taken by this process")]
    PipesTaken,
    /// The connection to the parent ended abnormally.
    #[error("connection to the parent failed")]
    Connection(#[source] ConnectionError),
}

/// What is wrong with the value of [`PIPES_ENV`] (in [`ChildServeError::BadPipes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadPipesReason {
    /// Not `<read>,<write>` with two different decimal numbers.
    #[error("expected <read>,<write>: two different numbers")]
    Malformed,
    /// A number names a standard stream (descriptors 0 to 2 on Unix, the standard handles on
    /// Windows).
    #[error("names a standard stream")]
    Standard,
    /// A number names no open descriptor or handle.
    #[error("names nothing open")]
    NotOpen,
    /// A number names something open that is not a pipe (a file, a socket, a terminal...).
    #[error("names something that is not a pipe")]
    NotAPipe,
    /// The first pipe is not open for reading, or the second not for writing (checked on Unix).
    #[error("a pipe is open in the wrong direction")]
    WrongDirection,
}

/// Which end of a pipe the child holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Read,
    Write,
}

/// A pipe's reading end, as the platform code hands it over.
pub(crate) type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
/// A pipe's writing end, as the platform code hands it over.
pub(crate) type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;
