//! Streams from the client against the server's limits: each open stream counts against
//! `max_streams` (and not as a call in flight), and a stream the client cancelled no longer
//! counts when its next one opens.

mod common;
mod store_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::within;
use futures_util::StreamExt;
use rpc_core::protocol::WireError;
use rpc_core::{ClientConfig, RpcError, ServerConfig, Stream};
use store_support::{chunks, serve, Seen, StoreClient, StoreImpl, StoreServer};

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

/// A stream that ended as it should (its source ran out) no longer counts against
/// `max_streams`: at one stream, chats one after another each open once the one before has
/// ended. Before, a result stream's place was given back only when it was cancelled or its task
/// panicked, and the second chat was refused with `TooManyStreams` for the rest of the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ended_frees_its_place() {
    let served = serve(ServerConfig::new().max_streams(1));
    let store = served.client::<StoreClient>(&ClientConfig::default()).await;
    for round in 0..10 {
        // The server forgets a stream once its task is joined, which may come just after the
        // client has seen the stream's end: a refusal until then is tried again.
        let replies = within("the chat to open", async {
            loop {
                let outgoing = Stream::iter(["hi".to_owned()]);
                match store.chat(format!("room {round}"), outgoing).await {
                    Err(RpcError::Remote(WireError::TooManyStreams { .. })) => {
                        tokio::task::yield_now().await;
                    }
                    other => break other.expect("open"),
                }
            }
        })
        .await;
        let replies: Vec<_> = within("the chat's end", replies.collect()).await;
        assert_eq!(
            replies
                .into_iter()
                .map(|r| r.expect("item"))
                .collect::<Vec<_>>(),
            [format!("room {round}: hi")]
        );
    }
}
