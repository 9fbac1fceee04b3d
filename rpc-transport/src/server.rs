//! The server loop: accepts connections on a named endpoint and serves each one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::frame::{FrameRead, FrameWrite};
use rpc_core::{serve_connection, CancellationToken, Dispatch, PeerInfo, ServerConfig};

use crate::limits::{Answering, RateLimited, Shares, ACCEPT_ERROR_LOG_EVERY};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::endpoint::Endpoint;
use crate::error::BindError;
use crate::sys as platform;

/// How long the server waits before accepting again after an error that can be retried.
const ACCEPT_RETRY_AFTER: Duration = Duration::from_millis(20);

/// How long a server whose connections have ended (or been closed at the shutdown timeout)
/// keeps turning away the clients that come, while it finishes answering those it turned
/// away before (on Windows, where its pipe's name outlives the drain).
const LAST_ANSWERS_WITHIN: Duration = Duration::from_secs(2);

/// A server bound to a named endpoint, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: platform::Listener,
    service: Arc<D>,
    config: ServerConfig,
    shutdown: CancellationToken,
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
        Self::bind_with(&Endpoint::new(name)?, service, &ServerConfig::default())
    }

    /// Binds `service` to `endpoint` with the settings of `config`. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`].
    pub fn bind_with(
        endpoint: &Endpoint,
        service: D,
        config: &ServerConfig,
    ) -> Result<Self, BindError> {
        let listener = platform::Listener::bind(endpoint, config)?;
        tracing::info!(endpoint = %endpoint, service = service.descriptor().name, "serving");
        Ok(Self {
            listener,
            service: Arc::new(service),
            config: config.clone(),
            shutdown: CancellationToken::new(),
            endpoint: endpoint.clone(),
        })
    }

    /// The signal that shuts this server down gracefully: `cancel()` it from anywhere.
    pub fn shutdown_handle(&self) -> CancellationToken {
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

    /// Serves clients until the shutdown handle is cancelled, then stops accepting (the endpoint
    /// disappears; on Windows, where a pipe's name lives on with the instances still draining,
    /// each client that comes meanwhile is told at once that the server is shutting down), lets
    /// connections finish their calls in flight for up to [`ServerConfig::shutdown_timeout`],
    /// and closes the rest. A client that connects once this has returned finds no server.
    ///
    /// A client over [`ServerConfig::max_connections`] (or, on an endpoint that lets other users
    /// in, over [`ServerConfig::max_connections_per_user`] for its user) is answered at once
    /// with [`rpc_core::protocol::Rejection::ServerBusy`], which its connect reports as
    /// [`crate::ConnectError::Busy`]. Accept errors that can be retried (out of descriptors)
    /// are retried, and logged at most once per 10 s.
    ///
    /// # Errors
    ///
    /// Only if accepting fails in a way that cannot be retried.
    pub async fn run(self) -> io::Result<()> {
        let Self {
            mut listener,
            service,
            config,
            shutdown,
            endpoint,
        } = self;
        let shutdown_timeout = config.get_shutdown_timeout();
        let max_connections = config.get_max_connections();
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut answering = Answering::default();
        let mut shares = endpoint
            .other_users_allowed()
            .then(|| Shares::new(config.get_max_connections_per_user()));
        let config = Arc::new(config);
        let mut connections = JoinSet::new();
        let mut accept_errors = RateLimited::new(ACCEPT_ERROR_LOG_EVERY);
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        let result = loop {
            while connections.try_join_next().is_some() {}
            // Once shut down, no client is served any more, also one that connected meanwhile.
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (reader, writer, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if platform::is_transient_accept_error(&error) => {
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(%error, suppressed, "accept failed; retrying");
                    }
                    // Out of descriptors or similar: give other connections a moment to close.
                    tokio::time::sleep(ACCEPT_RETRY_AFTER).await;
                    continue;
                }
                Err(error) => break Err(error),
            };
            // Over a limit: the client is told at once that the server is busy.
            let share = match shares.as_mut().map(|shares| shares.take(&peer)) {
                Some(None) => {
                    answering.refuse(reader, writer, config.get_max_connections_per_user());
                    continue;
                }
                Some(Some(share)) => Some(share),
                None => None,
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                answering.refuse(reader, writer, max_connections);
                continue;
            };
            let service = Arc::clone(&service);
            let config = Arc::clone(&config);
            let shutdown = shutdown.clone();
            let span = tracing::debug_span!("rpc.connection", endpoint = %endpoint, pid = peer.pid);
            connections.spawn(
                async move {
                    let _held = (permit, share);
                    if let Err(error) =
                        serve_connection(reader, writer, peer, service, &config, &shutdown).await
                    {
                        tracing::info!(%error, "connection closed with an error");
                    }
                }
                .instrument(span),
            );
        };
        // Stop accepting. Where the endpoint can disappear before the connections drain (Unix),
        // it does; on Windows the instances of the connections still draining keep the pipe's
        // name, and a new client would wait for a free one until its connect timeout and then
        // be told the server is busy, so each one that comes is told at once that the server
        // is shutting down.
        let mut listener = platform::DRAINING_SERVER_TURNS_CLIENTS_AWAY.then_some(listener);
        shutdown.cancel();
        let drained = tokio::time::timeout(
            shutdown_timeout,
            drain(&mut connections, &mut listener, &mut answering),
        )
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "shutdown timeout: closing connections with calls in flight"
            );
            connections.shutdown().await;
        }
        // The clients being answered get their answers, and those that come meanwhile are
        // turned away too, for up to `LAST_ANSWERS_WITHIN`; then the last answers end (each
        // within two seconds). The endpoint is gone once this returns: no client is being
        // answered on it, and no instance of its pipe is left.
        let _ = tokio::time::timeout(
            LAST_ANSWERS_WITHIN,
            answer_the_last(&mut listener, &mut answering),
        )
        .await;
        answering.finish().await;
        if let Some(listener) = listener {
            listener.close().await;
        }
        result
    }
}

/// Waits for every connection to end; meanwhile each client that comes to `listener`, if kept,
/// is told that the server is shutting down (see [`Answering`]).
async fn drain(
    connections: &mut JoinSet<()>,
    listener: &mut Option<platform::Listener>,
    answering: &mut Answering,
) {
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() {
                return;
            },
            accepted = accept(listener) => turn_away(accepted, listener, answering).await,
        }
    }
}

/// Waits until every client being answered has its answer; meanwhile each client that comes
/// to `listener`, if kept, is turned away too, rather than left at an instance of the pipe
/// that nobody reads until the listener closes. Clients that keep coming keep it going: the
/// caller bounds it.
async fn answer_the_last(listener: &mut Option<platform::Listener>, answering: &mut Answering) {
    loop {
        tokio::select! {
            more = answering.next_done() => if !more {
                return;
            },
            accepted = accept(listener) => turn_away(accepted, listener, answering).await,
        }
    }
}

/// The next client of `listener`; pending forever without one.
async fn accept(
    listener: &mut Option<platform::Listener>,
) -> io::Result<(impl FrameRead, impl FrameWrite, PeerInfo)> {
    match listener.as_mut() {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Tells a client that came while shutting down that the server is shutting down. Accept
/// errors that can be retried are, after a moment, as in the server loop; another one ends
/// the turning away.
async fn turn_away(
    accepted: io::Result<(impl FrameRead, impl FrameWrite, PeerInfo)>,
    listener: &mut Option<platform::Listener>,
    answering: &mut Answering,
) {
    match accepted {
        Ok((reader, writer, _)) => answering.turn_away(reader, writer),
        Err(error) if platform::is_transient_accept_error(&error) => {
            tokio::time::sleep(ACCEPT_RETRY_AFTER).await;
        }
        // Closed as at the end, so that the endpoint is gone once the server returns.
        Err(_) => {
            if let Some(listener) = listener.take() {
                listener.close().await;
            }
        }
    }
}

/// Serves `service` on `name` until Ctrl-C (on Unix also SIGTERM; on Windows also Ctrl-Break
/// and the console closing, and log-off and system shutdown, which Windows sends to services
/// only), then shuts down gracefully.
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
        shutdown.cancel();
    });
    server.run().await.map_err(|source| BindError::Io {
        name: name.to_owned(),
        source,
    })
}
