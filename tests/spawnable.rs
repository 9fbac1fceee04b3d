//! The serving futures can be spawned, from code that borrows its settings and from code
//! generic over the service. (A future that is `Send` only for one lifetime fails to compile
//! here: the test is the build.)

use rpc_core::{serve_connection, CancellationToken, Dispatch, PeerInfo, ServerConfig};

/// A service with nothing to it.
#[rpc_core::service]
pub trait Nothing {
    /// Does nothing.
    async fn nothing(&self);
}

struct Impl;

impl Nothing for Impl {
    async fn nothing(&self) {}
}

/// Generic over the service, as a transport's server loop is.
fn spawn_connection<D: Dispatch>(service: D) -> tokio::task::JoinHandle<()> {
    let ((reader, writer), _client) = rpc_core::memory::pair();
    tokio::spawn(async move {
        let config = ServerConfig::default();
        let shutdown = CancellationToken::new();
        let served = serve_connection(
            reader,
            writer,
            PeerInfo::unknown(),
            service,
            &config,
            &shutdown,
        );
        let _ = served.await;
    })
}

#[tokio::test]
async fn serving_futures_can_be_spawned() {
    let connection = spawn_connection(NothingServer::new(Impl));
    let inherited = tokio::spawn(async {
        let config = ServerConfig::default();
        rpc_transport::child::serve_inherited_pipes(NothingServer::new(Impl), &config).await
    });
    // No pipes were inherited: the service ends at once, with the error that says so.
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), inherited)
        .await
        .expect("ends at once")
        .expect("joins");
    assert!(served.is_err(), "{served:?}");
    // Its client is gone before the handshake: it ends too.
    tokio::time::timeout(std::time::Duration::from_secs(10), connection)
        .await
        .expect("ends at once")
        .expect("joins");
}
