//! Connecting blocking clients, from threads without an async runtime.
//!
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # fn gui_thread() -> Result<(), Box<dyn std::error::Error>> {
//! // No runtime to build: the connection is driven by a background thread.
//! let calc: CalculatorBlockingClient = rpc_transport::blocking::connect("calculator")?;
//! assert_eq!(calc.add(2, 3)?, 5);
//! # Ok(()) }
//! ```
//!
//! See [`rpc_core::blocking`] for how the calls run.

use rpc_core::blocking::{run, BlockingClient};
use rpc_core::ClientConfig;

use crate::{ConnectError, Endpoint};

/// Connects a blocking client to the service served on `name`, with default settings; blocks
/// until connected.
///
/// # Errors
///
/// As [`crate::connect`]; [`ConnectError::Handshake`] with [`rpc_core::RpcError::NoRuntime`]
/// if the background runtime could not start.
pub fn connect<B: BlockingClient>(name: &str) -> Result<B, ConnectError> {
    connect_with(&Endpoint::new(name)?, &ClientConfig::default())
}

/// Connects a blocking client to the service served on `endpoint` with the settings of
/// `config`; blocks until connected.
///
/// # Errors
///
/// As [`connect`].
pub fn connect_with<B: BlockingClient>(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<B, ConnectError> {
    let (endpoint, config) = (endpoint.clone(), config.clone());
    run(async move { crate::connect_with::<B::Async>(&endpoint, &config).await })?
        .map(B::from_async)
}

/// Starts a session of a blocking client with the service served on `endpoint` (see
/// [`crate::session`]), driven by the background runtime; returns at once.
///
/// # Errors
///
/// [`ConnectError::Handshake`] with [`rpc_core::RpcError::NoRuntime`] if the background
/// runtime could not start.
pub fn connect_session<B: BlockingClient>(
    endpoint: &Endpoint,
    client: &ClientConfig,
    session: &rpc_core::session::SessionConfig,
) -> Result<(B, rpc_core::session::Session), ConnectError> {
    let (endpoint, client, session) = (endpoint.clone(), client.clone(), session.clone());
    let (client, session) =
        run(async move { crate::session::connect_with::<B::Async>(&endpoint, &client, &session) })?;
    Ok((B::from_async(client), session))
}
