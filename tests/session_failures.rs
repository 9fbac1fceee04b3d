//! Sessions over a real endpoint that can never connect: they fail for good at once, with the
//! reason, instead of trying again forever.

mod common;

use std::time::Duration;

use common::within;
use rpc_core::session::{SessionConfig, SessionState};
use rpc_core::{ClientConfig, RpcError, ServerConfig};

/// What the client would have to serve.
#[rpc_core::service]
pub trait Asked {
    /// Answers.
    async fn answer(&self) -> u32;
}

/// A service that calls its client back.
#[rpc_core::service(callbacks = Asked)]
pub trait Asking {
    /// Does nothing.
    async fn ping(&self);
}

struct AskingImpl;

impl Asking for AskingImpl {
    async fn ping(&self) {}
}

/// A session of a service that declares callbacks, started without serving them: no attempt
/// can succeed (the client refuses before it sends anything), so the session fails at once
/// with `CallbacksMismatch`, and `connected` says so rather than waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_serve_the_callbacks_fails_at_once() {
    let served =
        common::Served::<()>::start(|_| AskingServer::new(AskingImpl), &ServerConfig::default());
    let mut session_config = SessionConfig::new();
    session_config.backoff_base(Duration::from_millis(5));
    let (client, session) = rpc_transport::session::connect_with::<AskingClient>(
        &served.endpoint,
        &ClientConfig::default(),
        &session_config,
    );
    let outcome = within("the session to fail", session.connected()).await;
    assert!(
        matches!(outcome, Err(RpcError::SessionFailed(_))),
        "{outcome:?}"
    );
    let SessionState::Failed { error, .. } = session.state() else {
        panic!("not failed: {:?}", session.state());
    };
    let cause = error.downcast_ref::<rpc_transport::ConnectError>();
    assert!(
        matches!(
            cause,
            Some(rpc_transport::ConnectError::Handshake(
                RpcError::CallbacksMismatch { .. }
            ))
        ),
        "{error}"
    );
    let call = within("a call", client.ping()).await;
    assert!(matches!(call, Err(RpcError::SessionFailed(_))), "{call:?}");
}
