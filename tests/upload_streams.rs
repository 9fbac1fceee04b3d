//! Streams from the client, and both ways at once: flow control, cancellation by drop either
//! way, typed ends, and the same over every transport.

mod common;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use common::within;
use futures_util::StreamExt;
use rpc_core::protocol::WireError;
use rpc_core::{ByteBuf, ClientConfig, RpcError, ServerConfig, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Why the store refuses an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UploadError {
    /// The upload has no name.
    NoName,
}

/// A store that takes streams from its clients.
#[rpc_core::service]
pub trait Store {
    /// Stores the chunks; answers with the bytes stored once the client's stream ends.
    async fn upload(&self, name: String, chunks: Stream<ByteBuf>) -> Result<u64, UploadError>;
    /// Takes `count` numbers, then drops the rest of the stream and answers with them.
    async fn take(&self, count: u32, numbers: Stream<u32>) -> Vec<u32>;
    /// Takes one number, reports it, then waits for the test before taking the rest.
    async fn hold(&self, numbers: Stream<u32>) -> u32;
    /// Every message back, prefixed with the room, as they come.
    async fn chat(&self, room: String, outgoing: Stream<String>) -> Stream<String>;
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
}

/// What the handlers report to the tests.
#[derive(Default)]
struct Seen {
    /// Handlers dropped before they finished.
    dropped: AtomicU32,
    /// Items taken by `hold` before it waits.
    held: AtomicU32,
    changed: Notify,
    release: Notify,
}

impl Seen {
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }
}

/// Counts a drop that happens before `finished`.
struct DropGuard {
    seen: Arc<Seen>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.dropped.fetch_add(1, Ordering::SeqCst);
            self.seen.changed.notify_waiters();
        }
    }
}

struct StoreImpl(Arc<Seen>);

impl Store for StoreImpl {
    async fn upload(&self, name: String, mut chunks: Stream<ByteBuf>) -> Result<u64, UploadError> {
        let mut guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        if name.is_empty() {
            guard.finished = true;
            return Err(UploadError::NoName);
        }
        let mut stored = 0;
        while let Some(chunk) = chunks.next().await {
            stored += chunk.len() as u64;
        }
        guard.finished = true;
        Ok(stored)
    }

    async fn take(&self, count: u32, numbers: Stream<u32>) -> Vec<u32> {
        numbers.take(count as usize).collect().await
    }

    async fn hold(&self, mut numbers: Stream<u32>) -> u32 {
        let mut guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        let release = self.0.release.notified();
        let first = numbers.next().await.unwrap_or_default();
        self.0.held.store(first + 1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        release.await;
        let rest = numbers.count().await as u32;
        guard.finished = true;
        1 + rest
    }

    async fn chat(&self, room: String, outgoing: Stream<String>) -> Stream<String> {
        let guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        Stream::new(outgoing.map(move |message| {
            let _ = &guard;
            format!("{room}: {message}")
        }))
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// A store served on an endpoint of its own.
type Served = common::Served<Seen>;

/// Serves the store with `config`.
fn serve(config: &ServerConfig) -> Served {
    Served::start(|seen| StoreServer::new(StoreImpl(seen)), config)
}

fn chunks(count: usize, size: usize) -> impl futures_util::Stream<Item = ByteBuf> + Send {
    futures_util::stream::iter((0..count).map(move |i| ByteBuf::from(vec![i as u8; size])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_answered_once_its_stream_ends() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let stored = store.upload("a".into(), chunks(100, 1000)).await;
    assert_eq!(stored.expect("call"), Ok(100_000));
    // An empty stream, a typed application error, and large items.
    let empty = store
        .upload("b".into(), futures_util::stream::empty())
        .await;
    assert_eq!(empty.expect("call"), Ok(0));
    let refused = store.upload(String::new(), chunks(3, 10)).await;
    assert_eq!(refused.expect("call"), Err(UploadError::NoName));
    let large = store.upload("c".into(), chunks(6, 1 << 20)).await;
    assert_eq!(large.expect("call"), Ok(6 << 20));
    // Many at once on one connection, beside calls.
    let uploads: Vec<_> = (0..40usize)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.upload(format!("{i}"), chunks(i, 100)).await })
        })
        .collect();
    assert_eq!(store.add(2, 3).await.expect("add"), 5);
    for (i, upload) in uploads.into_iter().enumerate() {
        let stored = upload.await.expect("join").expect("call");
        assert_eq!(stored, Ok(i as u64 * 100));
    }
}

/// The client sends an item only when the server has room: a handler that takes nothing
/// stops the client's stream at the server's window; once it takes items, the rest follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_stops_taking_items_stops_the_client() {
    const WINDOW: usize = 4;
    // The window counts bytes: each item costs its frame (these, numbers below 128 on the first
    // stream, are 3 bytes: the item's kind, the stream id and the number) and the overhead.
    const ITEM_COST: u32 = 3 + rpc_core::protocol::STREAM_ITEM_OVERHEAD;
    let served = serve(ServerConfig::new().stream_window(WINDOW as u32 * ITEM_COST));
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&pulled);
    let numbers = futures_util::stream::iter(0..1000u32).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let call = tokio::spawn({
        let store = store.clone();
        async move { store.hold(numbers).await }
    });
    served
        .seen
        .until("the handler to take one item", |seen| {
            seen.held.load(Ordering::SeqCst) == 1
        })
        .await;
    // A call on the same connection goes and comes back meanwhile: the client had every
    // chance to send more than it was granted.
    assert_eq!(store.add(1, 1).await.expect("add"), 2);
    let pulled_now = pulled.load(Ordering::SeqCst);
    assert!(
        pulled_now <= WINDOW,
        "{pulled_now} items taken from the client's stream with a window of {WINDOW}"
    );
    served.seen.release.notify_one();
    let taken = within("the call", call).await.expect("join").expect("call");
    assert_eq!(taken, 1000);
    assert_eq!(pulled.load(Ordering::SeqCst), 1000);
}

/// A handler that drops its argument stream stops the client's sending side: a sender then
/// fails with a typed error, and the call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_drops_the_stream_stops_the_sender() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, numbers) = Stream::channel(1);
    let call = tokio::spawn({
        let store = store.clone();
        async move { store.take(3, numbers).await }
    });
    let mut sent = 0u32;
    let refused = within("the sender to fail", async {
        loop {
            match sender.send(sent).await {
                Ok(()) => sent += 1,
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(sent >= 3, "{sent}");
    assert!(refused.0 >= 3);
    assert!(sender.is_closed());
    let taken = within("the answer", call).await.expect("join");
    assert_eq!(taken.expect("call"), [0, 1, 2]);
    // The connection goes on.
    assert_eq!(store.add(2, 2).await.expect("add"), 4);
}

/// Dropping the call drops the handler on the server, with its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_upload_call_drops_the_handler() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, numbers) = Stream::<ByteBuf>::channel(1);
    let call = tokio::spawn({
        let store = store.clone();
        async move { store.upload("slow".into(), numbers).await }
    });
    // The second item is taken from the channel only once the server has opened the stream:
    // the handler runs.
    sender.send(ByteBuf::from(vec![1])).await.expect("send");
    sender.send(ByteBuf::from(vec![2])).await.expect("send");
    call.abort();
    served
        .seen
        .until("the handler to be dropped", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    within("the sender to see the end", sender.closed()).await;
    assert_eq!(store.add(2, 2).await.expect("add"), 4);
}

/// A connection that dies fails an upload in progress with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dies_fails_the_upload() {
    let served = serve(ServerConfig::new().shutdown_timeout(std::time::Duration::from_millis(10)));
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, numbers) = Stream::<ByteBuf>::channel(1);
    let call = tokio::spawn({
        let store = store.clone();
        async move { store.upload("cut".into(), numbers).await }
    });
    sender.send(ByteBuf::from(vec![1])).await.expect("send");
    served.shutdown.cancel();
    let result = within("the call to fail", call).await.expect("join");
    assert!(
        matches!(
            result,
            Err(RpcError::ConnectionClosed
                | RpcError::ShuttingDown
                | RpcError::ClosedByPeer(_)
                | RpcError::Frame(_))
        ),
        "{result:?}"
    );
    within("the sender to see the end", sender.closed()).await;
}

/// Both ways at once: each message comes back while the client is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_runs_both_ways_at_once() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, outgoing) = Stream::channel(1);
    let mut incoming = store.chat("lobby".into(), outgoing).await.expect("open");
    for i in 0..100 {
        sender.send(format!("hello {i}")).await.expect("send");
        let echoed = within("the echo", incoming.next()).await;
        assert_eq!(
            echoed.map(Result::ok),
            Some(Some(format!("lobby: hello {i}")))
        );
    }
    // The client's stream ends: so does the server's.
    drop(sender);
    assert!(within("the end", incoming.next()).await.is_none());
    served
        .seen
        .until("the server's stream to be dropped", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
}

/// Dropping the receiver of a chat drops the server's stream, which ends the client's
/// sending side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_chat_ends_both_sides() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, outgoing) = Stream::channel(1);
    let mut incoming = store.chat("room".into(), outgoing).await.expect("open");
    sender.send("one".to_string()).await.expect("send");
    let first = within("the echo", incoming.next()).await;
    assert_eq!(first.map(Result::ok), Some(Some("room: one".to_string())));
    drop(incoming);
    served
        .seen
        .until("the server's stream to be dropped", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    within("the sender to see the end", sender.closed()).await;
    assert_eq!(store.add(1, 2).await.expect("add"), 3);
}

/// Opening more streams than the server allows fails with a typed error; an upload that is
/// refused sends nothing and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_count_against_the_stream_limit() {
    let served = serve(ServerConfig::new().max_streams(1));
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let (sender, outgoing) = Stream::channel(1);
    let _chat = store.chat("full".into(), outgoing).await.expect("open");
    let refused = store.upload("x".into(), chunks(3, 10)).await;
    assert!(
        matches!(
            refused,
            Err(RpcError::Remote(WireError::TooManyStreams { max: 1 }))
        ),
        "{refused:?}"
    );
    assert_eq!(store.add(1, 2).await.expect("add"), 3);
    drop(sender);
}

/// The same over two one-way pipes (as a child's stdio carries it) and in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_chats_run_over_pipes_and_memory() {
    let (to_server_read, to_server_write) = tokio::io::simplex(64 * 1024);
    let (to_client_read, to_client_write) = tokio::io::simplex(64 * 1024);
    let seen = Arc::new(Seen::default());
    tokio::spawn(rpc_transport::pipes::serve_pipes(
        to_server_read,
        to_client_write,
        StoreServer::new(StoreImpl(Arc::clone(&seen))),
        &ServerConfig::default(),
    ));
    let over_pipes: StoreClient = rpc_transport::pipes::connect_pipes(
        to_client_read,
        to_server_write,
        &ClientConfig::default(),
    )
    .await
    .expect("connect");
    let in_memory: StoreClient =
        rpc_core::memory::serve_and_connect(StoreServer::new(StoreImpl(seen)))
            .await
            .expect("connect");
    for store in [over_pipes, in_memory] {
        let stored = store.upload("p".into(), chunks(50, 3000)).await;
        assert_eq!(stored.expect("call"), Ok(150_000));
        let words = futures_util::stream::iter(["a", "b", "c"].map(String::from));
        let echoed: Vec<_> = store
            .chat("r".into(), words)
            .await
            .expect("open")
            .collect()
            .await;
        let echoed: Vec<String> = echoed.into_iter().map(|m| m.expect("item")).collect();
        assert_eq!(echoed, ["r: a", "r: b", "r: c"]);
    }
}

/// A blocking client uploads from an iterator.
#[test]
fn a_blocking_client_uploads_from_an_iterator() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let served = runtime.block_on(async { serve(&ServerConfig::default()) });
    let store: StoreBlockingClient =
        rpc_transport::blocking::connect_with(&served.endpoint, &Default::default())
            .expect("connect");
    let chunks: Vec<ByteBuf> = (0..10).map(|i| ByteBuf::from(vec![i; 7])).collect();
    assert_eq!(
        store.upload("blocking".into(), chunks).expect("call"),
        Ok(70)
    );
    let echoed: Vec<String> = store
        .chat("b".into(), vec!["x".to_string()])
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("items");
    assert_eq!(echoed, ["b: x"]);
}

/// An upload that fails on the client's side (here its stream panics) fails the call with the
/// error: the handler is stopped, and never takes the items sent so far for the whole upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_fails_on_the_client_fails_the_call() {
    let served = serve(&ServerConfig::default());
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let failing = chunks(2, 10).chain(futures_util::stream::poll_fn(
        |_| -> std::task::Poll<Option<ByteBuf>> { panic!("the upload's source fails") },
    ));
    let result = within("the call", store.upload("cut".into(), failing)).await;
    assert!(
        matches!(result, Err(RpcError::Remote(WireError::HandlerPanicked))),
        "{result:?}"
    );
    served
        .seen
        .until("the handler to be stopped", |seen| {
            seen.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    assert_eq!(store.add(2, 3).await.expect("add"), 5);
}

/// A connection that dies ends the sending side of a chat whose receiver is not being read:
/// the sender sees the end, rather than waiting for the items it sends to be taken. The server
/// here is a raw peer that opens the chat and then closes the connection, with no end for
/// either stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dies_ends_the_sending_side_of_a_chat() {
    use bytes::Bytes;
    use rpc_core::frame::{FrameRead, FrameWrite};
    use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(async move {
        let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
        let welcome = Header::Welcome {
            version: PROTOCOL_VERSION,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let welcome = Bytes::from(common::frame(&welcome, &[]));
        writer.write_frames(&[welcome]).await.expect("welcome");
        let call = reader
            .read_frame(DEFAULT_MAX_FRAME)
            .await
            .expect("call")
            .expect("a frame");
        let Ok((Header::Call { id, .. }, _)) = postcard::take_from_bytes::<Header>(&call) else {
            panic!("expected a call");
        };
        // The chat is open both ways: credit for the client's stream, and the reply.
        let credit = Header::Credit {
            stream: id,
            bytes: 1024,
        };
        let reply = Header::Reply {
            id,
            status: ReplyStatus::Ok,
        };
        let opened = [credit, reply].map(|header| Bytes::from(common::frame(&header, &[])));
        writer.write_frames(&opened).await.expect("open");
        // Then the connection dies.
    });
    let store: StoreClient =
        rpc_core::connect(client_reader, client_writer, &ClientConfig::default())
            .await
            .expect("connect");
    let (sender, outgoing) = Stream::channel(1);
    let incoming = store.chat("room".into(), outgoing).await.expect("open");
    within("the raw server", server).await.expect("join");
    let connection = rpc_core::Client::handle(&store)
        .connection()
        .expect("a connection");
    within("the connection to close", connection.closed()).await;
    within("the sender to see the end", sender.closed()).await;
    drop(incoming);
}

/// An upload cancelled while its items still wait to be written frees its place under the
/// server's limit of streams before the next stream opens: the next call goes out behind the
/// cancel, which goes out behind those items. Before, the call overtook them (calls go ahead of
/// stream frames) and the server, still counting the cancelled upload, refused it with
/// `TooManyStreams`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_frees_its_place_before_the_next_stream_opens() {
    // A narrow pipe to the server: the upload's items wait in the client's queue.
    let (to_server_read, to_server_write) = tokio::io::simplex(256);
    let (to_client_read, to_client_write) = tokio::io::simplex(64 * 1024);
    let seen = Arc::new(Seen::default());
    tokio::spawn(rpc_transport::pipes::serve_pipes(
        to_server_read,
        to_client_write,
        StoreServer::new(StoreImpl(Arc::clone(&seen))),
        ServerConfig::new().max_streams(1),
    ));
    let store: StoreClient = rpc_transport::pipes::connect_pipes(
        to_client_read,
        to_server_write,
        &ClientConfig::default(),
    )
    .await
    .expect("connect");
    let held = {
        let store = store.clone();
        tokio::spawn(async move {
            let numbers = futures_util::stream::iter(0..1_000_000u32);
            store.hold(Stream::new(numbers)).await
        })
    };
    // The server has the upload's first item: the stream is open, and its window of items is
    // on its way through the narrow pipe.
    seen.until("the first item", |seen| {
        seen.held.load(Ordering::SeqCst) != 0
    })
    .await;
    held.abort();
    // Dropped (its cancel queued) once the join says so.
    assert!(held.await.is_err_and(|e| e.is_cancelled()));
    let next = within(
        "the next upload",
        store.upload("next".into(), chunks(1, 10)),
    )
    .await;
    assert_eq!(next.expect("call"), Ok(10));
    seen.until("the held upload's handler to be dropped", |seen| {
        seen.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
}

/// A call whose handler waits for the items of its stream from the client is not a call in
/// flight (streams have their own limit): at one call in flight, two such calls and a plain
/// call are all served. Before, the first such handler took the only slot, the server stopped
/// reading, and the items it waited for were never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_waiting_for_items_are_not_calls_in_flight() {
    let served = serve(ServerConfig::new().max_in_flight(1));
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    let first = store.take(3, Stream::new(futures_util::stream::iter(0..3u32)));
    let second = store.take(2, Stream::new(futures_util::stream::iter(10..12u32)));
    let (first, second) = within("both uploads", futures_util::future::join(first, second)).await;
    assert_eq!(first.expect("first"), vec![0, 1, 2]);
    assert_eq!(second.expect("second"), vec![10, 11]);
    assert_eq!(store.add(1, 2).await.expect("add"), 3);
}
