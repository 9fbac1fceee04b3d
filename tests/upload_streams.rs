//! Streams from the client, and both ways at once: flow control, cancellation by drop either
//! way, typed ends, and the same over every transport.

mod common;
mod store_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::within;
use futures_util::StreamExt;
use rpc_core::protocol::WireError;
use rpc_core::{ByteBuf, ClientConfig, RpcError, ServerConfig, Stream};
use store_support::{
    chunks, serve, Seen, StoreBlockingClient, StoreClient, StoreImpl, StoreServer, UploadError,
};

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
        let echoed: Vec<_> = within(
            "the echoes",
            store.chat("r".into(), words).await.expect("open").collect(),
        )
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
    use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME};
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(async move {
        common::welcome_client(&mut reader, &mut writer).await;
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
