//! Sessions over named endpoints: a client that connects again when its server restarts.
//!
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Daemon { #[rpc(idempotent)] async fn status(&self) -> String; }
//! # async fn gui() -> Result<(), Box<dyn std::error::Error>> {
//! let (daemon, session): (DaemonClient, _) = rpc_transport::session::connect("daemon")?;
//! let mut state = session.watch();             // what the GUI shows
//! println!("{:?}", *state.borrow());
//! let status = daemon.status().await?;         // waits for the session within its deadline
//! state.changed().await?;                      // wakes on every change of the state
//! # Ok(()) }
//! ```
//!
//! See [`rpc_core::session`] for what calls and streams of a session do when the connection is
//! lost. What retrying cannot fix fails the session at once: a server that rejects the
//! handshake (another service, another protocol version, other callbacks), a welcome larger
//! than this client accepts, a client whose callbacks do not match its service's, an endpoint
//! name that cannot be one, a directory of endpoints that is not private to this user. Every
//! other error is retried.

use rpc_core::session::{Connect, Session, SessionConfig};
use rpc_core::{Client, ClientConfig, ClientHandle, RpcError, ServiceDescriptor};

use crate::{sys, ConnectError, Endpoint};

/// Connects to a named endpoint, for a session.
#[derive(Debug, Clone)]
pub struct EndpointConnector {
    endpoint: Endpoint,
    config: ClientConfig,
}

impl EndpointConnector {
    /// Connects to `endpoint` with the settings of `config`.
    pub fn new(endpoint: &Endpoint, config: &ClientConfig) -> Self {
        Self {
            endpoint: endpoint.clone(),
            config: config.clone(),
        }
    }
}

impl Connect for EndpointConnector {
    type Error = ConnectError;

    async fn connect(
        &self,
        service: &'static ServiceDescriptor,
    ) -> Result<ClientHandle, ConnectError> {
        let (reader, writer) = sys::connect(&self.endpoint, &self.config).await?;
        ClientHandle::connect(reader, writer, service, &self.config)
            .await
            .map_err(|error| crate::handshake_error(&self.endpoint, error))
    }

    fn is_permanent(&self, error: &ConnectError) -> bool {
        matches!(
            error,
            ConnectError::Handshake(
                RpcError::Rejected(_)
                    | RpcError::WelcomeTooLarge { .. }
                    | RpcError::CallbacksMismatch { .. }
            ) | ConnectError::InvalidName { .. }
                | ConnectError::InsecureDirectory { .. }
        )
    }
}

/// Starts a session of client `C` with the service served on `name`, with default settings.
/// Returns at once; calls wait for the first connection within their deadline. Must run inside
/// a tokio runtime, which drives the session.
///
/// # Errors
///
/// [`ConnectError::InvalidName`] if `name` cannot be an endpoint. Nothing else fails here: the
/// session's state says how connecting goes.
pub fn connect<C: Client>(name: &str) -> Result<(C, Session), ConnectError> {
    Ok(connect_with(
        &Endpoint::new(name)?,
        &ClientConfig::default(),
        &SessionConfig::default(),
    ))
}

/// Starts a session of client `C` with the service served on `endpoint`: `client` for each
/// connection and the calls' deadline, `session` for the backoff. As [`connect`].
pub fn connect_with<C: Client>(
    endpoint: &Endpoint,
    client: &ClientConfig,
    session: &SessionConfig,
) -> (C, Session) {
    Session::start(EndpointConnector::new(endpoint, client), client, session)
}
