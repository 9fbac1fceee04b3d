//! A stream from the client that a handler gives to a task of its own: the task sees the
//! client's end as a whole stream, and a call cancelled or a connection closed as a cut one,
//! at once, instead of waiting forever.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RawPeer;
use futures_util::StreamExt;
use rpc_core::protocol::WireError;
use rpc_core::protocol::{GoodbyeReason, Header};
use rpc_core::{Client, ClientConfig, RpcError, ServerConfig, Stream};
use tokio::sync::Notify;

/// A sink that keeps its streams in tasks of their own.
#[rpc_core::service]
pub trait Sink {
    /// Gives the numbers to a task of its own and answers at once.
    async fn keep(&self, numbers: Stream<u32>) -> u32;
    /// Gives the numbers to a task of its own and never answers.
    async fn keep_and_wait(&self, numbers: Stream<u32>) -> u32;
    /// Gives the numbers to a task of its own and answers once the task has seen their end.
    async fn keep_to_the_end(&self, numbers: Stream<u32>) -> u32;
}

/// What the kept streams' tasks saw.
#[derive(Default)]
struct Seen {
    /// Items taken so far, by every task.
    taken: Mutex<Vec<u32>>,
    /// For each stream that ended: the items it gave and whether it was cut.
    ended: Mutex<Vec<(usize, bool)>>,
    changed: Notify,
}

impl Seen {
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }

    /// Waits until the kept streams' tasks have taken `count` items.
    async fn until_taken(&self, count: usize) {
        self.until("the task to take its items", |seen| {
            seen.taken.lock().expect("lock").len() == count
        })
        .await;
    }

    /// Waits until a kept stream ended, and returns what the tasks saw.
    async fn until_ended(&self) -> Vec<(usize, bool)> {
        self.until("the task to see the stream end", |seen| {
            !seen.ended().is_empty()
        })
        .await;
        self.ended()
    }

    fn ended(&self) -> Vec<(usize, bool)> {
        self.ended.lock().expect("lock").clone()
    }
}

struct SinkImpl(Arc<Seen>);

impl SinkImpl {
    /// Takes `numbers` to their end in a task of its own, reporting each item and the end.
    fn detach(&self, mut numbers: Stream<u32>) {
        let seen = Arc::clone(&self.0);
        tokio::spawn(async move {
            let mut count = 0;
            while let Some(n) = numbers.next().await {
                count += 1;
                seen.taken.lock().expect("lock").push(n);
                seen.changed.notify_waiters();
            }
            let cut = numbers.is_cut();
            seen.ended.lock().expect("lock").push((count, cut));
            seen.changed.notify_waiters();
        });
    }
}

impl Sink for SinkImpl {
    async fn keep(&self, numbers: Stream<u32>) -> u32 {
        self.detach(numbers);
        0
    }

    async fn keep_and_wait(&self, numbers: Stream<u32>) -> u32 {
        self.detach(numbers);
        std::future::pending().await
    }

    async fn keep_to_the_end(&self, numbers: Stream<u32>) -> u32 {
        self.detach(numbers);
        self.0
            .until("the kept stream's end", |seen| !seen.ended().is_empty())
            .await;
        1
    }
}

type Served = common::Served<Seen>;

fn serve(config: &ServerConfig) -> Served {
    Served::start(|seen| SinkServer::new(SinkImpl(seen)), config)
}

/// Three numbers, then nothing more, without an end.
fn three_then_silence() -> impl futures_util::Stream<Item = u32> + Send {
    futures_util::stream::iter(0..3u32).chain(futures_util::stream::pending())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_ends_whole_at_the_clients_end() {
    let served = serve(&ServerConfig::default());
    let sink = served.client::<SinkClient>(&ClientConfig::default()).await;
    let call = sink.keep_to_the_end(futures_util::stream::iter(0..10u32));
    assert_eq!(common::within("the call", call).await.expect("call"), 1);
    assert_eq!(
        served.seen.ended(),
        [(10, false)],
        "the whole stream, not cut"
    );
}

/// A call answered before the client's stream ends sends nothing more of it: the task that
/// keeps it sees it cut, not ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_when_its_call_is_answered_first() {
    let served = serve(&ServerConfig::default());
    let sink = served.client::<SinkClient>(&ClientConfig::default()).await;
    let answer = common::within("the call", sink.keep(three_then_silence())).await;
    assert_eq!(answer.expect("call"), 0);
    let ended = served.seen.until_ended().await;
    assert!(
        matches!(ended[..], [(taken, true)] if taken <= 3),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_when_its_call_is_cancelled() {
    let served = serve(&ServerConfig::default());
    let sink = served.client::<SinkClient>(&ClientConfig::default()).await;
    let call = tokio::spawn({
        let sink = sink.clone();
        async move { sink.keep_and_wait(three_then_silence()).await }
    });
    served.seen.until_taken(3).await;
    // Dropping the call's future cancels it.
    call.abort();
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
    // The connection goes on.
    let again = sink.keep(futures_util::stream::iter(0..2u32));
    assert_eq!(
        common::within("another call", again).await.expect("call"),
        0
    );
}

/// Call `id` to the sink's `name`, a whole frame.
fn raw_call_frame(id: u64, name: &str) -> Vec<u8> {
    let method = <SinkClient as Client>::SERVICE
        .methods
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .expect("the method");
    let call = Header::Call {
        id,
        method,
        deadline_us: None,
    };
    common::frame(&call, &postcard::to_stdvec(&()).expect("encode"))
}

/// A raw client of the sink: its hello, and call 1 to `keep_and_wait` with the numbers 0, 1
/// and 2 once the server opens the stream.
async fn raw_keep_and_wait(served: &Served) -> RawPeer {
    raw_call(served, "keep_and_wait").await
}

/// A raw client of the sink: its hello, and call 1 to `method` with the numbers 0, 1 and 2
/// once the server opens the stream.
async fn raw_call(served: &Served, name: &str) -> RawPeer {
    let mut peer = RawPeer::handshake_for(&served.address, <SinkClient as Client>::SERVICE).await;
    peer.send_raw(&raw_call_frame(1, name)).await.expect("send");
    assert!(matches!(
        peer.recv().await,
        Some((Header::Credit { stream: 1, .. }, _))
    ));
    for n in 0..3 {
        peer.send_raw(&common::stream_item(1, n))
            .await
            .expect("send");
    }
    peer
}

/// The client goes away in the middle of its stream, without cancelling the call first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_when_its_connection_closes() {
    let served = serve(&ServerConfig::default());
    let peer = raw_keep_and_wait(&served).await;
    served.seen.until_taken(3).await;
    drop(peer);
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
}

/// A server whose shutdown timeout passes with the call still running drops its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_when_the_server_shuts_down() {
    let served = serve(ServerConfig::new().shutdown_timeout(Duration::from_millis(50)));
    let _peer = raw_keep_and_wait(&served).await;
    served.seen.until_taken(3).await;
    served.shutdown.cancel();
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
}

/// The client's side of the stream fails (its source panics): the call fails, and the task
/// that keeps the stream sees it cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_when_the_clients_side_fails() {
    let served = serve(&ServerConfig::default());
    let sink = served.client::<SinkClient>(&ClientConfig::default()).await;
    let failing = futures_util::stream::iter(0..3u32).chain(futures_util::stream::once(async {
        panic!("the source fails on purpose")
    }));
    let answer = common::within("the call", sink.keep_and_wait(failing)).await;
    assert!(
        matches!(answer, Err(RpcError::Remote(WireError::HandlerPanicked))),
        "{answer:?}"
    );
    // The items not taken when the failure came are not given.
    let ended = served.seen.until_ended().await;
    assert!(
        matches!(ended[..], [(taken, true)] if taken <= 3),
        "{ended:?}"
    );
}

/// An item that does not decode, after the call was answered: the task that keeps the
/// stream sees it cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_is_cut_by_an_item_that_does_not_decode() {
    let served = serve(&ServerConfig::default());
    let mut peer = raw_call(&served, "keep").await;
    served.seen.until_taken(3).await;
    // Not a `u32`: a varint longer than any.
    let bad = common::frame(&Header::StreamItem { stream: 1 }, &[0xff; 8]);
    peer.send_raw(&bad).await.expect("send");
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
}

/// An item that does not decode, taken after the client ended the stream: the task that
/// keeps the stream sees it cut, not ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stream_that_fails_after_its_end_is_cut() {
    let served = serve(&ServerConfig::default());
    let mut peer = raw_call(&served, "keep").await;
    served.seen.until_taken(3).await;
    let mut bad_then_end = common::frame(&Header::StreamItem { stream: 1 }, &[0xff; 8]);
    bad_then_end.extend(common::frame(
        &Header::StreamEnd {
            stream: 1,
            error: None,
        },
        &[],
    ));
    peer.send_raw(&bad_then_end).await.expect("send");
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
}

/// A call's id stays in use while its argument stream is open, after the call was answered: a
/// new call with it breaks the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_whose_stream_is_open_is_not_reused() {
    let served = serve(&ServerConfig::default());
    let mut peer = raw_call(&served, "keep").await;
    assert!(matches!(
        peer.recv().await,
        Some((Header::Reply { id: 1, .. }, _))
    ));
    let again = raw_call_frame(1, "keep");
    peer.send_raw(&again).await.expect("send");
    let seen = peer.until_closed().await;
    assert!(
        seen.contains(&Header::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        }),
        "{seen:?}"
    );
    let ended = served.seen.until_ended().await;
    assert!(
        matches!(ended[..], [(taken, true)] if taken <= 3),
        "{ended:?}"
    );
}

/// A call answered while its stream is kept frees the stream's place under the limit before the
/// next stream opens: the stream's cancel is queued as the answer is taken, and the next opening
/// call goes out behind it. Before, the upload's own task queued the cancel, and had not run yet
/// when the next call went out (certain on one thread): the server, still counting the first
/// stream, refused the next with `TooManyStreams`.
#[tokio::test(flavor = "current_thread")]
async fn an_answered_call_frees_its_streams_place_before_the_next_opens() {
    let served = serve(ServerConfig::new().max_streams(1));
    let sink = served.client::<SinkClient>(&ClientConfig::default()).await;
    for round in 0..3 {
        let answer = common::within("a call", sink.keep(three_then_silence())).await;
        assert_eq!(answer.expect("answered"), 0, "round {round}");
    }
}

/// A stream the server forgot with its cancelled call owes the client nothing more: when the
/// task that kept it drops it, no stop goes out for its id, which the client may already have
/// given to its next call (a stop would end that call's stream, which the server would then
/// take for whole). Before, the drop sent `StreamStop` for the forgotten stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_stream_sends_no_stop_when_dropped() {
    let served = serve(&ServerConfig::default());
    let mut peer = raw_keep_and_wait(&served).await;
    served.seen.until_taken(3).await;
    let cancel = common::frame(&Header::Cancel { id: 1 }, &[]);
    peer.send_raw(&cancel).await.expect("send");
    assert_eq!(served.seen.until_ended().await, [(3, true)]);
    // The next call; everything the server sends until its reply is looked at.
    peer.send_raw(&raw_call_frame(2, "keep"))
        .await
        .expect("send");
    let mut seen = Vec::new();
    loop {
        let Some((header, _)) = common::within("the next reply", peer.recv()).await else {
            panic!("closed; saw {seen:?}");
        };
        let replied = matches!(header, Header::Reply { id: 2, .. });
        seen.push(header);
        if replied {
            break;
        }
    }
    assert!(
        !seen.contains(&Header::StreamStop { stream: 1 }),
        "{seen:?}"
    );
}
