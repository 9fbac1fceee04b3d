//! One-way calls that reach a server after its goodbye, while it drains: they are run, since
//! nothing could tell their client that they were not (a call is refused with
//! `ShuttingDown`, and a session sends it again; a one-way call has no reply).

mod common;

use std::sync::Mutex;

use common::RawPeer;
use rpc_core::protocol::{GoodbyeReason, Header};
use rpc_core::{Client, ServerConfig};
use tokio::sync::Notify;

/// A call that keeps the drain going, and a one-way call that leaves a note.
#[rpc_core::service]
pub trait Draining {
    /// Never answers.
    async fn hang(&self) -> u32;
    /// Leaves `n` in the notes.
    #[rpc(oneway)]
    async fn note(&self, n: u32);
}

#[derive(Default)]
struct Seen {
    hanging: Mutex<usize>,
    notes: Mutex<Vec<u32>>,
    changed: Notify,
}

struct DrainingImpl(std::sync::Arc<Seen>);

impl Draining for DrainingImpl {
    async fn hang(&self) -> u32 {
        *self.0.hanging.lock().expect("lock") += 1;
        self.0.changed.notify_waiters();
        std::future::pending().await
    }

    async fn note(&self, n: u32) {
        self.0.notes.lock().expect("lock").push(n);
        self.0.changed.notify_waiters();
    }
}

fn method_id(name: &str) -> u32 {
    <DrainingClient as Client>::SERVICE
        .methods
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .expect("the method")
}

/// A one-way call sent after the server's goodbye, which its client had not read yet, runs
/// while a call in flight keeps the drain going. Before, it was dropped without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_call_that_arrives_during_the_drain_is_run() {
    let served = common::Served::start(
        |seen| DrainingServer::new(DrainingImpl(seen)),
        &ServerConfig::default(),
    );
    let seen = &served.seen;
    let mut peer =
        RawPeer::handshake_for(&served.address, <DrainingClient as Client>::SERVICE).await;
    let hang = Header::Call {
        id: 1,
        method: method_id("hang"),
        deadline_us: None,
    };
    peer.send_raw(&common::frame(&hang, &[]))
        .await
        .expect("send");
    common::until_notified("the call to start", &seen.changed, || {
        *seen.hanging.lock().expect("lock") == 1
    })
    .await;
    served.shutdown.cancel();
    loop {
        match common::within("the goodbye", peer.recv()).await {
            Some((Header::Goodbye { reason }, _)) => {
                assert_eq!(reason, GoodbyeReason::ShuttingDown);
                break;
            }
            Some(_) => {}
            None => panic!("closed before its goodbye"),
        }
    }
    let note = Header::Notify {
        method: method_id("note"),
    };
    let body = postcard::to_stdvec(&(7u32,)).expect("encode");
    peer.send_raw(&common::frame(&note, &body))
        .await
        .expect("send");
    common::until_notified("the one-way call to run", &seen.changed, || {
        seen.notes.lock().expect("lock").contains(&7)
    })
    .await;
}
