//! A graceful shutdown and the streams of calls still opening: such a call is stopped and
//! answered with `Stopped` at once (not `ShuttingDown`, which says a call did not run), rather
//! than left without a reply until the connection closes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::within;
use rpc_core::protocol::WireError;
use rpc_core::{ClientConfig, RpcError, ServerConfig};
use tokio::sync::Notify;

/// A service whose stream opens only when the test lets it, and a call that never ends.
#[rpc_core::service]
pub trait Opening {
    /// Returns its stream once the test says so (never, here).
    async fn late(&self) -> rpc_core::Stream<u32>;
    /// Never answers.
    async fn hang(&self) -> u32;
}

/// Handlers that have started.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    changed: Notify,
}

struct OpeningImpl(Arc<Seen>);

impl OpeningImpl {
    async fn start_and_wait(&self) -> ! {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        std::future::pending().await
    }
}

impl Opening for OpeningImpl {
    async fn late(&self) -> rpc_core::Stream<u32> {
        self.start_and_wait().await
    }

    async fn hang(&self) -> u32 {
        self.start_and_wait().await
    }
}

/// A shutdown while a stream's handler has not returned it yet, with another call keeping the
/// connection open through the drain: the stream's caller gets `Stopped` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_still_opening_at_a_shutdown_is_answered() {
    // The drain, and the calls, last as long as the test: only an answer ends the open.
    let mut config = ServerConfig::new();
    config.shutdown_timeout(std::time::Duration::from_secs(3600));
    let served = common::Served::start(|seen| OpeningServer::new(OpeningImpl(seen)), &config);
    let mut client_config = ClientConfig::new();
    client_config.default_timeout(None);
    let client: OpeningClient = served.client(&client_config).await;
    let draining = tokio::spawn({
        let client = client.clone();
        async move { client.hang().await }
    });
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.late().await.map(|_| ()) }
    });
    let seen = &served.seen;
    common::until_notified("both handlers to start", &seen.changed, || {
        seen.started.load(Ordering::SeqCst) == 2
    })
    .await;
    served.shutdown.cancel();
    let opened = within("the stream's call to be answered", opening)
        .await
        .expect("joined");
    assert!(
        matches!(opened, Err(RpcError::Remote(WireError::Stopped))),
        "{opened:?}"
    );
    assert!(!draining.is_finished(), "the other call still drains");
    draining.abort();
}
