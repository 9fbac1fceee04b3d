//! A named pair of one-way pipes: on Windows, one inbound and one outbound named pipe.
//!
//! The Windows counterpart of Unix FIFO pairs: the server creates `\\.\pipe\rpc-<name>.in`
//! (client to server) and `\\.\pipe\rpc-<name>.out` (server to client), each with a single
//! instance, the same DACL, flags and message mode as the duplex pipes, and serves one client
//! at a time over them. The client opens them by name with [`connect`].
//!
//! Nothing waits forever: a client may open the two pipes in either order; a second client while
//! one is connected waits, and gets [`ConnectError::Busy`] after
//! [`ClientConfig::connect_timeout`]; with no server, [`ConnectError::NotFound`] comes at once;
//! a client that opens one pipe and not the other within the handshake timeout is disconnected.
//!
//! An endpoint made with [`Endpoint::allow_other_users`] opens both pipes to every local user,
//! as it does a duplex pipe.

use std::future::Future;
use std::io;
use std::sync::Arc;

use rpc_core::{
    serve_connection, CancellationToken, Client, ClientConfig, Dispatch, PeerInfo, ServerConfig,
};

use crate::endpoint::Endpoint;
use crate::error::{BindError, ConnectError};
use crate::sys::{connect_pair, pair_paths, PairListener};

/// A pipe pair bound to a name, ready to [`serve`](FifoServer::serve).
pub struct FifoServer {
    listener: PairListener,
    paths: (String, String),
}

impl std::fmt::Debug for FifoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FifoServer")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl FifoServer {
    /// Creates `endpoint`'s two pipes.
    ///
    /// # Errors
    ///
    /// [`BindError::AddrInUse`] if the name is taken; [`BindError::Io`] if creating a pipe
    /// fails.
    pub fn bind(endpoint: &Endpoint) -> Result<Self, BindError> {
        Self::bind_with(endpoint, &ServerConfig::default())
    }

    /// [`FifoServer::bind`], with the settings that `serve` will use (the handshake timeout
    /// also bounds how long a client may take to open its second pipe, and the maximum frame
    /// bounds what the connection's reading thread takes).
    ///
    /// # Errors
    ///
    /// As [`FifoServer::bind`].
    pub fn bind_with(endpoint: &Endpoint, config: &ServerConfig) -> Result<Self, BindError> {
        Ok(Self {
            listener: PairListener::bind(endpoint, config)?,
            paths: pair_paths(endpoint),
        })
    }

    /// The two pipes: client to server, and server to client.
    pub fn pipe_names(&self) -> (&str, &str) {
        (&self.paths.0, &self.paths.1)
    }

    /// Serves clients one at a time, each until it closes its connection. Runs until dropped
    /// (which closes the current connection and the pipes).
    ///
    /// # Errors
    ///
    /// Only if waiting for a client fails. Errors of single connections are logged and the next
    /// client is served.
    ///
    /// The future owns a copy of `config`, so it can be spawned.
    pub fn serve<D: Dispatch>(
        self,
        service: D,
        config: &ServerConfig,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static {
        self.serve_owned(service, config.clone())
    }

    async fn serve_owned<D: Dispatch>(
        mut self,
        service: D,
        config: ServerConfig,
    ) -> io::Result<()> {
        let service = Arc::new(service);
        let shutdown = CancellationToken::new();
        loop {
            let (reader, writer) = self.listener.accept().await?;
            tracing::debug!(pipe = %self.paths.0, "client connected");
            let served = serve_connection(
                reader,
                writer,
                PeerInfo::unknown(),
                Arc::clone(&service),
                &config,
                &shutdown,
            )
            .await;
            if let Err(error) = served {
                tracing::info!(%error, "pipe pair connection ended with an error");
            }
            self.listener.disconnect();
        }
    }
}

/// Connects to the pipe pair served on `endpoint`.
///
/// # Errors
///
/// [`ConnectError::NotFound`] if no server serves the name, [`ConnectError::Busy`] if another
/// client stayed connected for [`ClientConfig::connect_timeout`] (default 5 s),
/// [`ConnectError::UntrustedServer`] if the server runs as another user; otherwise as
/// [`crate::connect`].
pub async fn connect<C: Client>(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<C, ConnectError> {
    let (reader, writer) = connect_pair(endpoint, config).await?;
    Ok(rpc_core::connect(reader, writer, config).await?)
}
