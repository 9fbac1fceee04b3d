//! Streams from server to client: order, credit, cancellation by drop, typed ends, limits, and
//! the transports they run over.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use futures_util::StreamExt;
use rpc_core::protocol::WireError;
use rpc_core::{ByteBuf, ClientConfig, RpcError, ServerConfig};
use tokio::sync::Notify;

/// A service of streams.
#[rpc_core::service]
pub trait Feed {
    /// `count` numbers from `from`, each after a yield.
    async fn count(&self, from: u32, count: u32) -> rpc_core::Stream<u32>;
    /// Numbers without end; the test sees how many were taken and when the stream is dropped.
    async fn endless(&self) -> rpc_core::Stream<u64>;
    /// `count` buffers of `size` bytes.
    async fn big(&self, count: u32, size: u32) -> rpc_core::Stream<ByteBuf>;
    /// `after` numbers, then a panic.
    async fn panics(&self, after: u32) -> rpc_core::Stream<u32>;
    /// Typed application errors, item by item.
    async fn results(&self) -> rpc_core::Stream<Result<u32, String>>;
    /// A plain call beside the streams.
    async fn add(&self, a: i64, b: i64) -> i64;
}

/// What the server's streams report to the test.
#[derive(Default)]
struct Seen {
    /// Items taken from `endless` streams.
    taken: AtomicU64,
    /// `endless` streams dropped.
    dropped: AtomicU64,
    changed: Notify,
}

impl Seen {
    /// Waits until `done` holds of the counts, failing the test after the usual patience.
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }
}

#[derive(Clone)]
struct FeedImpl(Arc<Seen>);

/// Counts a dropped `endless` stream.
struct OnDrop(Arc<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Feed for FeedImpl {
    async fn count(&self, from: u32, count: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::new(
            futures_util::stream::iter(from..from + count).then(|n| async move {
                tokio::task::yield_now().await;
                n
            }),
        )
    }

    async fn endless(&self) -> rpc_core::Stream<u64> {
        let guard = OnDrop(Arc::clone(&self.0));
        rpc_core::Stream::new(futures_util::stream::iter(0u64..).map(move |n| {
            let seen = &guard.0;
            seen.taken.fetch_add(1, Ordering::SeqCst);
            seen.changed.notify_waiters();
            n
        }))
    }

    async fn big(&self, count: u32, size: u32) -> rpc_core::Stream<ByteBuf> {
        let size = usize::try_from(size).unwrap_or(0);
        rpc_core::Stream::iter((0..count).map(move |i| ByteBuf::from(vec![i as u8; size])))
    }

    async fn panics(&self, after: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::new(futures_util::stream::iter(0..).map(move |n| {
            assert!(n < after, "the stream fails on purpose");
            n
        }))
    }

    async fn results(&self) -> rpc_core::Stream<Result<u32, String>> {
        rpc_core::Stream::iter([Ok(1), Err("two".to_owned()), Ok(3)])
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// A feed served on an endpoint of its own (a Unix socket, or a Windows named pipe).
type Served = common::Served<Seen>;

/// Serves the feed with `config`.
fn serve(config: &ServerConfig) -> Served {
    Served::start(|seen| FeedServer::new(FeedImpl(seen)), config)
}

/// All items of a stream, and how it ended.
async fn collect<T: serde::de::DeserializeOwned>(
    mut stream: rpc_core::StreamReceiver<T>,
) -> (Vec<T>, Option<RpcError>) {
    let mut items = Vec::new();
    while let Some(item) = within("the next item", stream.next()).await {
        match item {
            Ok(item) => items.push(item),
            Err(error) => {
                assert!(
                    within("the end", stream.next()).await.is_none(),
                    "items after an error"
                );
                return (items, Some(error));
            }
        }
    }
    (items, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_arrive_in_order_and_the_stream_ends() {
    let served = serve(&ServerConfig::default());
    let feed = served.client::<FeedClient>(&ClientConfig::default()).await;
    let opened = feed.count(5, 1000).await.expect("open");
    let (items, error) = collect(opened).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(items, (5..1005).collect::<Vec<_>>());
    // Many at once on one connection, beside calls.
    let streams: Vec<_> = (0..50u32)
        .map(|i| {
            let feed = feed.clone();
            tokio::spawn(async move { collect(feed.count(i, 20).await.expect("open")).await })
        })
        .collect();
    assert_eq!(feed.add(2, 3).await.expect("add"), 5);
    for (i, stream) in (0u32..).zip(streams) {
        let (items, error) = stream.await.expect("join");
        assert!(error.is_none());
        assert_eq!(items, (i..i + 20).collect::<Vec<_>>());
    }
}

/// A window smaller than one item still lets items through, one at a time: the producer may
/// start an item while its credit is positive, and waits once it has overdrawn it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_smaller_than_an_item_lets_one_item_at_a_time_through() {
    let served = serve(&ServerConfig::default());
    let feed = served
        .client::<FeedClient>(ClientConfig::new().stream_window(1))
        .await;
    let mut stream = feed.endless().await.expect("open");
    for taken in 1..=3 {
        served
            .seen
            .until("the next item", |seen| {
                seen.taken.load(Ordering::SeqCst) >= taken
            })
            .await;
        // What is checked is that nothing more happens: give a runaway producer time to show.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(served.seen.taken.load(Ordering::SeqCst), taken);
        assert_eq!(
            within("an item", stream.next())
                .await
                .expect("an item")
                .expect("ok"),
            taken - 1
        );
    }
}

/// The server's stream is polled only while the client has room: a receiver that takes
/// nothing stops it at the window, taking items lets it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_taking_items_stops_the_producer() {
    const WINDOW: u64 = 4;
    // The window counts bytes: each item costs its frame (these, numbers below 128 on the first
    // stream, are 3 bytes: the item's kind, the stream id and the number) and the overhead.
    const ITEM_COST: u32 = 3 + rpc_core::protocol::STREAM_ITEM_OVERHEAD;
    let served = serve(&ServerConfig::default());
    let feed = served
        .client::<FeedClient>(ClientConfig::new().stream_window(WINDOW as u32 * ITEM_COST))
        .await;
    let mut stream = feed.endless().await.expect("open");
    served
        .seen
        .until("the window to fill", |seen| {
            seen.taken.load(Ordering::SeqCst) >= WINDOW
        })
        .await;
    // What is checked is that nothing more happens: give a runaway producer time to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served.seen.taken.load(Ordering::SeqCst), WINDOW);
    // Taking half the window grants that much again.
    for expected in 0..WINDOW / 2 {
        assert_eq!(
            within("an item", stream.next())
                .await
                .expect("an item")
                .expect("ok"),
            expected
        );
    }
    served
        .seen
        .until("more items", |seen| {
            seen.taken.load(Ordering::SeqCst) >= WINDOW + WINDOW / 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served.seen.taken.load(Ordering::SeqCst),
        WINDOW + WINDOW / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_receiver_drops_the_servers_stream() {
    let served = serve(&ServerConfig::default());
    let feed = served.client::<FeedClient>(&ClientConfig::default()).await;
    let mut stream = feed.endless().await.expect("open");
    assert_eq!(
        within("an item", stream.next())
            .await
            .expect("an item")
            .expect("ok"),
        0
    );
    drop(stream);
    served
        .seen
        .until("the server to drop the stream", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    // The connection goes on.
    assert_eq!(feed.add(1, 2).await.expect("add"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_with_typed_errors() {
    let served = serve(&ServerConfig::default());
    let feed = served.client::<FeedClient>(&ClientConfig::default()).await;
    let (items, error) = collect(feed.panics(3).await.expect("open")).await;
    assert_eq!(items, [0, 1, 2]);
    assert!(
        matches!(error, Some(RpcError::Remote(WireError::HandlerPanicked))),
        "{error:?}"
    );
    let (items, error) = collect(feed.results().await.expect("open")).await;
    assert!(error.is_none());
    assert_eq!(items, [Ok(1), Err("two".to_owned()), Ok(3)]);
    // A server shutting down ends its open streams with a typed reason.
    let mut endless = feed.endless().await.expect("open");
    assert!(within("an item", endless.next()).await.is_some());
    served.shutdown.cancel();
    let mut end = None;
    while let Some(item) = within("the stream to end", endless.next()).await {
        if let Err(error) = item {
            end = Some(error);
        }
    }
    assert!(
        matches!(end, Some(RpcError::Remote(WireError::ShuttingDown))),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dies_ends_its_streams() {
    let (server, client) = rpc_core::memory::pair();
    let seen = Arc::new(Seen::default());
    let feed_server = FeedServer::new(FeedImpl(Arc::clone(&seen)));
    let serving = tokio::spawn(async move {
        let config = ServerConfig::default();
        let shutdown = rpc_core::CancellationToken::new();
        let peer = rpc_core::PeerInfo::unknown();
        rpc_core::serve_connection(server.0, server.1, peer, feed_server, &config, &shutdown).await
    });
    let feed: FeedClient = rpc_core::connect(client.0, client.1, &ClientConfig::default())
        .await
        .expect("connect");
    let mut stream = feed.endless().await.expect("open");
    assert!(within("an item", stream.next()).await.is_some());
    serving.abort();
    let mut end = None;
    while let Some(item) = within("the stream to end", stream.next()).await {
        if let Err(error) = item {
            end = Some(error);
        }
    }
    assert!(matches!(end, Some(RpcError::ConnectionClosed)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_limited_with_a_typed_error() {
    let served = serve(ServerConfig::new().max_streams(2));
    // Small windows: the open streams are never read, and fill no more than these.
    let feed = served
        .client::<FeedClient>(ClientConfig::new().stream_window(4096))
        .await;
    let first = feed.endless().await.expect("open");
    let second = feed.endless().await.expect("open");
    let third = feed.endless().await;
    assert!(
        matches!(
            third,
            Err(RpcError::Remote(WireError::TooManyStreams { max: 2 }))
        ),
        "{third:?}"
    );
    // Calls go on; a stream closed frees its place.
    assert_eq!(feed.add(1, 1).await.expect("add"), 2);
    drop(first);
    served
        .seen
        .until("the stream to be dropped", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    let again = within("a place to free", async {
        loop {
            match feed.endless().await {
                Ok(stream) => break stream,
                Err(RpcError::Remote(WireError::TooManyStreams { .. })) => {
                    tokio::task::yield_now().await
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    drop((second, again));
}

/// Large items are spliced, not copied, and arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_items_arrive_whole() {
    let served = serve(&ServerConfig::default());
    let feed = served.client::<FeedClient>(&ClientConfig::default()).await;
    let (items, error) = collect(feed.big(8, 1 << 20).await.expect("open")).await;
    assert!(error.is_none());
    assert_eq!(items.len(), 8);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.len(), 1 << 20);
        assert!(item.iter().all(|&b| b == i as u8));
    }
}

/// Over two one-way pipes, as a child's stdio would carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_run_over_pipes() {
    let (to_server_read, to_server_write) = tokio::io::simplex(64 * 1024);
    let (to_client_read, to_client_write) = tokio::io::simplex(64 * 1024);
    tokio::spawn(rpc_transport::pipes::serve_pipes(
        to_server_read,
        to_client_write,
        FeedServer::new(FeedImpl(Arc::default())),
        &ServerConfig::default(),
    ));
    let feed: FeedClient = rpc_transport::pipes::connect_pipes(
        to_client_read,
        to_server_write,
        &ClientConfig::default(),
    )
    .await
    .expect("connect");
    let (items, error) = collect(feed.count(0, 100).await.expect("open")).await;
    assert!(error.is_none());
    assert_eq!(items, (0..100).collect::<Vec<_>>());
}

/// A blocking client iterates over a stream.
#[test]
fn a_blocking_client_iterates_over_a_stream() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let served = runtime.block_on(async { serve(&ServerConfig::default()) });
    let feed: FeedBlockingClient =
        rpc_transport::blocking::connect_with(&served.endpoint, &Default::default())
            .expect("connect");
    let items: Vec<u32> = feed
        .count(1, 50)
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("items");
    assert_eq!(items, (1..51).collect::<Vec<_>>());
    let mut endless = feed.endless().expect("open");
    assert_eq!(endless.next().map(Result::ok), Some(Some(0)));
    drop(endless);
    runtime.block_on(served.seen.until("the stream to be dropped", |seen| {
        seen.dropped.load(Ordering::SeqCst) == 1
    }));
}
