//! A handler that drops its argument stream stops the client's sending side even while that
//! side has nothing to send: the sender sees the stop as soon as it arrives, not at its next
//! item.

mod common;

use common::within;
use futures_util::StreamExt;
use rpc_core::{ClientConfig, ServerConfig, Stream};

/// A room that stops listening at once but keeps talking.
#[rpc_core::service]
pub trait Room {
    /// Drops `outgoing` at once; the returned stream never ends on its own.
    async fn chat(&self, outgoing: Stream<String>) -> Stream<String>;
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
}

/// What the room shares with the tests: nothing.
#[derive(Default)]
struct Nothing;

struct RoomImpl;

impl Room for RoomImpl {
    async fn chat(&self, outgoing: Stream<String>) -> Stream<String> {
        drop(outgoing);
        Stream::new(futures_util::stream::pending())
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// The server stops a chat's upload while the client's sender is idle: the sender sees the
/// stop at once and refuses its next item, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reaches_an_idle_sender() {
    let served =
        common::Served::<Nothing>::start(|_| RoomServer::new(RoomImpl), &ServerConfig::default());
    let room = served.client::<RoomClient>(&ClientConfig::default()).await;
    let (sender, outgoing) = Stream::channel(1);
    let mut incoming = room.chat(outgoing).await.expect("open");
    within("the sender to see the stop", sender.closed()).await;
    assert!(sender.is_closed());
    assert!(sender.send("too late".to_string()).await.is_err());
    // The server took the client's answer to its stop for what it expects: the connection,
    // and the chat's own stream, go on.
    assert_eq!(room.add(1, 2).await.expect("add"), 3);
    assert!(futures_util::FutureExt::now_or_never(incoming.next()).is_none());
}
