//! A client may use a request id again as soon as it has the reply to the call that used it
//! (as a simple client that numbers every call 1 does): the server takes the new call, also
//! while the task of the old one has not quite ended.

mod common;

use common::{frame, within, RawPeer};
use rpc_core::protocol::{Header, ReplyStatus};
use rpc_core::{Client, ServerConfig};
use rpc_transport::pipes::serve_pipes;
use tokio::io::AsyncWriteExt;

/// Numbers that come back after a wait.
#[rpc_core::service]
pub trait Later {
    /// Yields once, then returns `n`.
    async fn after_a_yield(&self, n: u32) -> u32;
}

struct LaterImpl;

impl Later for LaterImpl {
    async fn after_a_yield(&self, n: u32) -> u32 {
        tokio::task::yield_now().await;
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_free_again_once_its_reply_has_come() {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let server = tokio::spawn(serve_pipes(
        server_read,
        server_write,
        LaterServer::new(LaterImpl),
        &ServerConfig::default(),
    ));
    let (read, write) = tokio::io::split(client_end);
    let mut peer = RawPeer::from_halves(Box::new(read), Box::new(write));
    let service = <LaterClient as Client>::SERVICE;
    peer.send_hello_for(service).await;
    assert!(
        matches!(peer.recv().await, Some((Header::Welcome { .. }, _))),
        "a welcome"
    );
    let method = service.methods.first().expect("a method").id;
    for n in 0..2000u32 {
        let call = Header::Call {
            id: 1,
            method,
            deadline_us: None,
        };
        let args = postcard::to_stdvec(&(n,)).expect("encode");
        peer.send_raw(&frame(&call, &args)).await.expect("call");
        match peer.recv().await {
            Some((
                Header::Reply {
                    id: 1,
                    status: ReplyStatus::Ok,
                },
                body,
            )) => assert_eq!(postcard::from_bytes::<u32>(&body).expect("a u32"), n),
            other => panic!("call {n}: {other:?}"),
        }
    }
    peer.writer.shutdown().await.expect("close");
    within("the connection ends", server)
        .await
        .expect("join")
        .expect("served without a protocol violation");
}
