//! The server loop: accepts connections on a named endpoint and serves each one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{serve_connection, ConnectError, Dispatch, ServerConfig, Shutdown};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::endpoint::Endpoint;
use crate::platform;

/// Settings of a server on a named endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Settings of each connection (frame size, handshake timeout, calls in flight).
    pub config: ServerConfig,
    /// Connections served at once; further clients wait to be accepted. Default 256. On Windows
    /// one more pipe instance always waits for the next client.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for calls in flight before closing anyway. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Windows only: let every local user connect, not just the server's own user (and SYSTEM
    /// and administrators). For a service that runs as SYSTEM and serves ordinary users; every
    /// local process can then call every method, so each handler must check
    /// [`rpc_core::CallContext`]'s peer itself. Unix endpoints are always private to the user;
    /// serve from a directory given with [`Endpoint::in_dir`] to share them.
    pub allow_other_users: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            config: ServerConfig::default(),
            max_connections: 256,
            shutdown_timeout: Duration::from_secs(10),
            allow_other_users: false,
        }
    }
}

impl ServerOptions {
    /// Sets the settings of each connection.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets how many connections are served at once.
    ///
    /// # Panics
    ///
    /// If `connections` is zero.
    #[track_caller]
    pub fn max_connections(mut self, connections: usize) -> Self {
        assert!(connections > 0, "max_connections must be at least 1");
        self.max_connections = connections;
        self
    }

    /// Sets how long a graceful shutdown waits for calls in flight.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
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

/// A server bound to a named endpoint, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: platform::Listener,
    service: Arc<D>,
    options: ServerOptions,
    shutdown: Shutdown,
    endpoint: Endpoint,
}

impl<D> std::fmt::Debug for Server<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<D: Dispatch> Server<D> {
    /// Binds `service` to `name` with default options. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BindError::AddrInUse`] if a live server holds the name; see [`BindError`] for the rest.
    pub fn bind(name: &str, service: D) -> Result<Self, BindError> {
        Self::bind_with(&Endpoint::new(name)?, service, ServerOptions::default())
    }

    /// Binds `service` to `endpoint`. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`].
    pub fn bind_with(
        endpoint: &Endpoint,
        service: D,
        options: ServerOptions,
    ) -> Result<Self, BindError> {
        let listener = platform::Listener::bind(endpoint, &options)?;
        tracing::info!(endpoint = %endpoint, service = service.descriptor().name, "serving");
        Ok(Self {
            listener,
            service: Arc::new(service),
            options,
            shutdown: Shutdown::new(),
            endpoint: endpoint.clone(),
        })
    }

    /// The signal that shuts this server down gracefully; trigger it from anywhere.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The endpoint served.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Where clients connect: the socket path on Unix, the pipe path on Windows.
    pub fn address(&self) -> String {
        self.listener.address()
    }

    /// Serves clients until the shutdown handle is triggered, then stops accepting (the endpoint
    /// disappears), lets connections finish their calls in flight for up to
    /// [`ServerOptions::shutdown_timeout`], and closes the rest.
    ///
    /// # Errors
    ///
    /// Only if accepting fails in a way that cannot be retried.
    pub async fn run(self) -> io::Result<()> {
        let Self {
            mut listener,
            service,
            options,
            shutdown,
            endpoint,
        } = self;
        let config = Arc::new(options.config.clone());
        let slots = Arc::new(Semaphore::new(options.max_connections));
        let mut connections = JoinSet::new();
        let stop = shutdown.triggered();
        tokio::pin!(stop);
        let result = loop {
            while connections.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()),
                },
                () = &mut stop => break Ok(()),
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break Ok(()),
            };
            let (reader, writer, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if platform::is_transient_accept_error(&error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    // Out of descriptors or similar: give other connections a moment to close.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(error) => break Err(error),
            };
            let service = Arc::clone(&service);
            let config = Arc::clone(&config);
            let shutdown = shutdown.clone();
            let span = tracing::debug_span!("rpc.connection", endpoint = %endpoint, pid = peer.pid);
            connections.spawn(
                async move {
                    let _permit = permit;
                    if let Err(error) =
                        serve_connection(reader, writer, peer, service, &config, &shutdown).await
                    {
                        tracing::info!(%error, "connection closed with an error");
                    }
                }
                .instrument(span),
            );
        };
        // Stop accepting: the endpoint disappears before the connections drain.
        drop(listener);
        shutdown.trigger();
        let drained = tokio::time::timeout(options.shutdown_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "shutdown timeout: closing connections with calls in flight"
            );
            connections.shutdown().await;
        }
        result
    }
}

/// Serves `service` on `name` until Ctrl-C (or SIGTERM on Unix), then shuts down gracefully.
///
/// # Errors
///
/// [`BindError`] if the name cannot be taken; [`BindError::Io`] if accepting fails for good.
pub async fn serve<D: Dispatch>(name: &str, service: D) -> Result<(), BindError> {
    let server = Server::bind(name, service)?;
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        platform::termination_signal().await;
        tracing::info!("termination requested; shutting down");
        shutdown.trigger();
    });
    server.run().await.map_err(|source| BindError::Io {
        name: name.to_owned(),
        source,
    })
}
