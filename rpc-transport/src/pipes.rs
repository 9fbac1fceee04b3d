//! Connections over any two one-way byte pipes: one to read, one to write.
//!
//! Pipes are one-way; a reader and a writer make a duplex connection that the engines use
//! exactly like a named endpoint's: handshake, concurrent calls, deadlines, cancellation and
//! limits all work the same. Anything that implements tokio's [`AsyncRead`] and [`AsyncWrite`]
//! will do: tokio's Unix pipe ends (`tokio::net::unix::pipe`), a child's `ChildStdout` and
//! `ChildStdin`, one direction each of two named pipes, or a socket split in two.
//!
//! For child processes, [`crate::child`] does the plumbing (and supervises the child); these two
//! functions are for pipes you already have.
//!
//! ```
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct Calc;
//! # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::RpcError> {
//! // Two one-way pipes (in-process here; normally one end of each is in another process).
//! let (to_server_read, to_server_write) = tokio::io::simplex(64 * 1024);
//! let (to_client_read, to_client_write) = tokio::io::simplex(64 * 1024);
//! let server = rpc_transport::pipes::serve_pipes(
//!     to_server_read,
//!     to_client_write,
//!     CalculatorServer::new(Calc),
//!     &rpc_core::ServerConfig::default(),
//! );
//! tokio::spawn(server);
//! let calc: CalculatorClient = rpc_transport::pipes::connect_pipes(
//!     to_client_read,
//!     to_server_write,
//!     &rpc_core::ClientConfig::default(),
//! )
//! .await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! # Ok(())
//! # }
//! ```

use std::future::Future;

use rpc_core::frame::{FrameReader, FrameWriter};
use rpc_core::{
    serve_connection, CancellationToken, Client, ClientConfig, ConnectionError, Dispatch, PeerInfo,
    RpcError, ServerConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// Connects a client for `C`'s service over a pipe from the server (`reader`) and a pipe to it
/// (`writer`), and performs the handshake.
///
/// # Errors
///
/// As [`rpc_core::ClientHandle::connect`]: [`RpcError::Rejected`] if the server serves another
/// service or version, [`RpcError::HandshakeTimeout`] if it does not answer in time,
/// [`rpc_core::ProtocolError::NotThisProtocol`] (inside [`RpcError::Protocol`]) if what comes
/// back is not this protocol at all, and [`RpcError::ConnectionClosed`] or [`RpcError::Frame`]
/// if a pipe closes or fails.
pub async fn connect_pipes<C, R, W>(
    reader: R,
    writer: W,
    config: &ClientConfig,
) -> Result<C, RpcError>
where
    C: Client,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    rpc_core::connect(FrameReader::new(reader), FrameWriter::new(writer), config).await
}

/// Serves `service` to the one client at the other end of a pipe pair, until the client says
/// goodbye or closes its pipe. The peer is unknown to the handlers ([`PeerInfo::unknown`]).
///
/// The future owns a copy of `config`, so it can be spawned.
///
/// # Errors
///
/// Why the connection ended abnormally (a bad handshake, a bad frame, a protocol violation, a
/// failed write); see [`ConnectionError`]. A client that goes away is `Ok`.
pub fn serve_pipes<D, R, W>(
    reader: R,
    writer: W,
    service: D,
    config: &ServerConfig,
) -> impl Future<Output = Result<(), ConnectionError>> + Send + 'static
where
    D: Dispatch,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let config = config.clone();
    async move { serve_pipes_as(reader, writer, PeerInfo::unknown(), service, &config).await }
}

/// [`serve_pipes`] with a known peer.
pub(crate) async fn serve_pipes_as<D, R, W>(
    reader: R,
    writer: W,
    peer: PeerInfo,
    service: D,
    config: &ServerConfig,
) -> Result<(), ConnectionError>
where
    D: Dispatch,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_connection(
        FrameReader::new(reader),
        FrameWriter::new(writer),
        peer,
        service,
        config,
        &CancellationToken::new(),
    )
    .await
}
