//! A client may use a request id again as soon as it has the reply to the call that used it
//! (as a simple client that numbers every call 1 does): the server takes the new call, also
//! while the task of the old one has not quite ended.

mod common;

use common::{frame, within};
use rpc_core::frame::{FrameRead, FrameReader};
use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION};
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
    let (read, mut write) = tokio::io::split(client_end);
    let mut reader = FrameReader::new(read);
    let service = <LaterClient as Client>::SERVICE;
    let hello = Header::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        service: service.name.to_owned(),
        fingerprint: service.fingerprint(),
        max_frame: 1 << 20,
        callbacks: 0,
    };
    write.write_all(&frame(&hello, &[])).await.expect("hello");
    let welcome = within("the welcome", reader.read_frame(DEFAULT_MAX_FRAME))
        .await
        .expect("read")
        .expect("a frame");
    assert!(matches!(
        postcard::from_bytes::<Header>(&welcome),
        Ok(Header::Welcome { .. })
    ));
    let method = service.methods.first().expect("a method").id;
    for n in 0..2000u32 {
        let call = Header::Call {
            id: 1,
            method,
            deadline_us: None,
        };
        let args = postcard::to_stdvec(&(n,)).expect("encode");
        write.write_all(&frame(&call, &args)).await.expect("call");
        let reply = within("the reply", reader.read_frame(DEFAULT_MAX_FRAME))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("the server closed the connection at call {n}"));
        let (header, body) = postcard::take_from_bytes::<Header>(&reply).expect("a header");
        match header {
            Header::Reply {
                id: 1,
                status: ReplyStatus::Ok,
            } => assert_eq!(postcard::from_bytes::<u32>(body).expect("a u32"), n),
            other => panic!("call {n}: {other:?}"),
        }
    }
    write.shutdown().await.expect("close");
    within("the connection ends", server)
        .await
        .expect("join")
        .expect("served without a protocol violation");
}
