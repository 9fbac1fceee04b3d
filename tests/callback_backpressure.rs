//! A client that never reads cannot make a server queue calls to its callbacks without end:
//! those waiting to go out count against the server's `max_unsent_bytes` too (apart from its
//! replies), and past it the server stops reading the client's calls.

mod common;

use bytes::Bytes;
use rpc_core::frame::FrameWrite;
use rpc_core::protocol::Header;
use rpc_core::{ByteBuf, CallContext};

/// What the server tells its client, without waiting.
#[rpc_core::service]
pub trait Progress {
    /// A large note.
    #[rpc(oneway)]
    async fn note(&self, data: ByteBuf);
}

/// What the client calls: each call sends a large note back.
#[rpc_core::service(callbacks = Progress)]
pub trait Worker {
    /// Notes 64 KiB on the client, answers 1.
    async fn work(&self) -> u32;
}

struct Chatty;

impl Worker for Chatty {
    async fn work(&self) -> u32 {
        let Some(context) = CallContext::current() else {
            return 0;
        };
        let Ok(client) = context.callbacks::<ProgressClient>() else {
            return 0;
        };
        let _ = client.note(ByteBuf::from(vec![0u8; 64 * 1024])).await;
        1
    }
}

fn frame(header: &Header, body: &[u8]) -> Bytes {
    Bytes::from(common::frame(header, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_backpressure_from_callbacks_too() {
    let ((reader, mut writer), serving) = common::serve_in_memory(WorkerServer::new(Chatty));
    let service = <WorkerClient as rpc_core::Client>::SERVICE;
    writer
        .write_frames(&[frame(&common::hello(service), &[])])
        .await
        .expect("hello");
    let work = service.method_named("work").map(|m| m.id).expect("work");
    // Batches of calls, written until a write waits: the server has stopped reading. Each
    // call queues 64 KiB of callbacks and a reply of a few bytes: without the bound on
    // callbacks, a MiB of replies (the bound on replies) takes over 100,000 calls.
    const BATCH: u64 = 100;
    const MOST: u64 = 2_000;
    let mut sent = 0;
    loop {
        assert!(
            sent < MOST,
            "{sent} calls sent and the server never pushed back"
        );
        let batch: Vec<Bytes> = (sent..sent + BATCH)
            .map(|id| {
                let call = Header::Call {
                    id: id + 1,
                    method: work,
                    deadline_us: None,
                };
                frame(&call, &[])
            })
            .collect();
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            writer.write_frames(&batch),
        )
        .await
        {
            Ok(result) => result.expect("send"),
            Err(_) => break,
        }
        sent += BATCH;
    }
    // The client never read, and is still connected: the server waits for it, it did not
    // give up on the connection.
    assert!(!serving.is_finished(), "{:?}", serving.await);
    drop(reader);
}
