//! Stream tasks that panic outside their handler's guard: a result stream whose source panics
//! when it is dropped, after its end went out, must still stop counting against the
//! connection's limit of open streams; a handler that panics when its deadline drops it, before
//! it returned its stream or its result, must still have its call answered.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use rpc_core::protocol::{Header, ReplyStatus, WireError};
use rpc_core::{ClientConfig, RpcError, ServerConfig, Stream};

/// Opens streams whose source panics when dropped.
#[rpc_core::service]
pub trait Fragile {
    /// One item, then the end; the source panics when it is dropped.
    async fn one(&self) -> Stream<u32>;
    /// Never returns its stream; panics when it is dropped.
    async fn stuck(&self) -> Stream<u32>;
    /// Never answers; panics when it is dropped.
    async fn stuck_call(&self) -> u32;
}

/// A stream of one item that panics when dropped.
struct PanicOnDrop(futures_util::stream::Iter<std::ops::Range<u32>>);

impl futures_util::Stream for PanicOnDrop {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a source that panics when dropped");
        }
    }
}

struct FragileImpl;

impl Fragile for FragileImpl {
    async fn one(&self) -> Stream<u32> {
        Stream::new(PanicOnDrop(futures_util::stream::iter(0..1)))
    }

    async fn stuck(&self) -> Stream<u32> {
        let _guard = PanicOnDrop(futures_util::stream::iter(0..0));
        std::future::pending().await
    }

    async fn stuck_call(&self) -> u32 {
        let _guard = PanicOnDrop(futures_util::stream::iter(0..0));
        std::future::pending().await
    }
}

/// After such a stream has ended, the next one opens under a limit of one stream: before, the
/// panicking task was never forgotten, and every later stream was refused with `TooManyStreams`.
/// (Until the connection has joined the ended stream's task, an opening may still be refused:
/// the test tries again until one opens, and fails if none does in time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_source_panics_when_dropped_frees_its_place() {
    let served = common::Served::start(
        |_: std::sync::Arc<()>| FragileServer::new(FragileImpl),
        ServerConfig::new().max_streams(1),
    );
    let client = served
        .client::<FragileClient>(&ClientConfig::default())
        .await;
    let first: Vec<_> = common::within("the first stream", async {
        client.one().await.expect("opened").collect().await
    })
    .await;
    assert!(matches!(first[..], [Ok(0)]), "{first:?}");
    common::within("a second stream to open", async {
        loop {
            match client.one().await {
                Ok(_) => break,
                Err(RpcError::Remote(WireError::TooManyStreams { .. })) => {
                    tokio::task::yield_now().await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
}

/// A handler stopped at its deadline, whose drop panics: the call is still answered (the client
/// here is a raw peer that does not enforce the deadline itself), for a call that returns a
/// stream as for a plain one. Before, the panicking task was forgotten without a word, and the
/// call waited for the connection's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_when_stopped_still_has_its_call_answered() {
    for method in ["stuck", "stuck_call"] {
        assert_eq!(
            answer_when_stopped(method).await,
            ReplyStatus::Failed(WireError::HandlerPanicked),
            "{method}"
        );
    }
}

/// How a raw peer's call of `method`, with a deadline of 20 ms, is answered.
async fn answer_when_stopped(method: &str) -> ReplyStatus {
    use rpc_core::Client;
    let served = common::Served::start(
        |_: std::sync::Arc<()>| FragileServer::new(FragileImpl),
        &ServerConfig::default(),
    );
    let service = <FragileClient as Client>::SERVICE;
    let mut peer = common::RawPeer::handshake_for(&served.address, service).await;
    let method = service
        .methods
        .iter()
        .find(|m| m.name == method)
        .map(|m| m.id)
        .expect("the method");
    let call = Header::Call {
        id: 1,
        method,
        deadline_us: Some(20_000),
    };
    peer.send_raw(&common::frame(&call, &[]))
        .await
        .expect("send");
    loop {
        match common::within("the answer", peer.recv()).await {
            Some((Header::Reply { id: 1, status }, _)) => return status,
            Some(_) => {}
            None => panic!("closed without an answer"),
        }
    }
}
