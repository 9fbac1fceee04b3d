//! Calls with a stream from the client that their caller drops after they have their outcome,
//! without polling them again (as `try_join_all` drops the others once one fails), still cancel
//! their streams: the server forgets them, and they do not use up its limit of open streams.

use std::time::Duration;

use futures_util::future::try_join_all;
use rpc_core::{ClientConfig, RpcError, ServerConfig, Stream};
use rpc_transport::pipes::{connect_pipes, serve_pipes};

/// Keeps streams from its clients.
#[rpc_core::service]
pub trait Keeper {
    /// Hands the stream to a task that keeps it without reading it, and never answers.
    async fn keep(&self, numbers: Stream<u32>) -> u32;
    /// The sum of the numbers.
    async fn sum(&self, numbers: Stream<u32>) -> u64;
    /// Answers.
    async fn ping(&self);
}

struct KeeperImpl;

impl Keeper for KeeperImpl {
    async fn keep(&self, numbers: Stream<u32>) -> u32 {
        // Beyond the call's deadline: only the client's end or cancel ends the stream.
        tokio::spawn(async move {
            let _kept = numbers;
            std::future::pending::<()>().await;
        });
        std::future::pending().await
    }

    async fn sum(&self, numbers: Stream<u32>) -> u64 {
        futures_util::StreamExt::fold(numbers, 0, |sum, n| async move { sum + u64::from(n) }).await
    }

    async fn ping(&self) {}
}

/// Paused time: every deadline of a round passes at the same instant, once nothing else can
/// run, so that the client marks every call of the round failed before it polls any of them.
#[tokio::test(start_paused = true)]
async fn uploads_dropped_after_their_deadline_free_their_streams() {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let mut config = ServerConfig::new();
    config.max_streams(2);
    let _server = tokio::spawn(serve_pipes(
        server_read,
        server_write,
        KeeperServer::new(KeeperImpl),
        &config,
    ));
    let (client_read, client_write) = tokio::io::split(client_end);
    let client: KeeperClient = connect_pipes(client_read, client_write, &ClientConfig::default())
        .await
        .expect("connect");
    let impatient = client.with_timeout(Some(Duration::from_millis(50)));
    for round in 0..4 {
        // Two uploads the server keeps without answering; the first failure drops the other.
        let calls = (0..2).map(|_| impatient.keep(Stream::new(futures_util::stream::pending())));
        let failed = try_join_all(calls).await;
        assert!(
            matches!(failed, Err(RpcError::DeadlineExceeded)),
            "round {round}: {failed:?}"
        );
        // Cancels go behind the stream frames, which calls may overtake: the second of two
        // calls in a row is sent after them, and answered once the server has taken them.
        for _ in 0..2 {
            client.ping().await.expect("ping");
        }
    }
    // Every stream of those calls is forgotten: an upload opens and completes.
    let sum = client
        .with_timeout(Some(Duration::from_secs(60)))
        .sum(Stream::iter([1, 2, 3]))
        .await;
    assert!(matches!(sum, Ok(6)), "{sum:?}");
}
