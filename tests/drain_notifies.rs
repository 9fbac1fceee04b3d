//! One-way calls that reach a server after its goodbye, while it drains: they are run, since
//! nothing could tell their client that they were not (a call is refused with
//! `ShuttingDown`, which its caller sees; a one-way call has no reply), within the limit of
//! handlers.

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
    /// Leaves `n` in the notes; for 0, once the test releases it.
    #[rpc(oneway)]
    async fn note(&self, n: u32);
}

struct Seen {
    /// Handlers that have started and wait: `hang`, and `note` of 0.
    hanging: Mutex<usize>,
    notes: Mutex<Vec<u32>>,
    changed: Notify,
    release: tokio::sync::Semaphore,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            hanging: Mutex::default(),
            notes: Mutex::default(),
            changed: Notify::new(),
            release: tokio::sync::Semaphore::new(0),
        }
    }
}

struct DrainingImpl(std::sync::Arc<Seen>);

impl Draining for DrainingImpl {
    async fn hang(&self) -> u32 {
        *self.0.hanging.lock().expect("lock") += 1;
        self.0.changed.notify_waiters();
        std::future::pending().await
    }

    async fn note(&self, n: u32) {
        if n == 0 {
            *self.0.hanging.lock().expect("lock") += 1;
            self.0.changed.notify_waiters();
            let _ = self.0.release.acquire().await;
        }
        self.0.notes.lock().expect("lock").push(n);
        self.0.changed.notify_waiters();
    }
}

/// Reads frames until one that `wanted` holds for, and returns it; fails the test if the
/// connection closes first or none comes in time.
async fn until_frame(peer: &mut RawPeer, what: &str, wanted: impl Fn(&Header) -> bool) -> Header {
    loop {
        match common::within(what, peer.recv()).await {
            Some((header, _)) if wanted(&header) => return header,
            Some(_) => {}
            None => panic!("closed before {what}"),
        }
    }
}

fn note_frame(n: u32) -> Vec<u8> {
    let note = Header::Notify {
        method: method_id("note"),
    };
    common::frame(&note, &postcard::to_stdvec(&(n,)).expect("encode"))
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
    let goodbye = until_frame(&mut peer, "the goodbye", |h| {
        matches!(h, Header::Goodbye { .. })
    })
    .await;
    assert_eq!(
        goodbye,
        Header::Goodbye {
            reason: GoodbyeReason::ShuttingDown
        }
    );
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

/// At the limit of handlers (one, taken by a one-way call that waits), one-way calls that
/// arrive during the drain are not run: the server reads on while it drains, whatever its
/// handlers, and must not start more of them than its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_past_the_limit_during_the_drain_are_not_run() {
    let served = common::Served::start(
        |seen| DrainingServer::new(DrainingImpl(seen)),
        ServerConfig::new().max_in_flight(1),
    );
    let seen = &served.seen;
    let mut peer =
        RawPeer::handshake_for(&served.address, <DrainingClient as Client>::SERVICE).await;
    peer.send_raw(&note_frame(0)).await.expect("send");
    // Running before the shutdown: an idle server would close at once.
    common::until_notified("the first one-way call to start", &seen.changed, || {
        *seen.hanging.lock().expect("lock") == 1
    })
    .await;
    served.shutdown.cancel();
    until_frame(&mut peer, "the goodbye", |h| {
        matches!(h, Header::Goodbye { .. })
    })
    .await;
    for n in 1..=3 {
        peer.send_raw(&note_frame(n)).await.expect("send");
    }
    // A call, refused: once its answer is here, the server has read the one-way calls.
    let hang = Header::Call {
        id: 1,
        method: method_id("hang"),
        deadline_us: None,
    };
    peer.send_raw(&common::frame(&hang, &[]))
        .await
        .expect("send");
    until_frame(&mut peer, "the refusal", |h| {
        matches!(h, Header::Reply { id: 1, .. })
    })
    .await;
    seen.release.add_permits(1);
    // The drain ends once the handlers have: then every one that was started has run.
    common::within("the connection to close", peer.until_closed()).await;
    assert_eq!(*seen.notes.lock().expect("lock"), [0]);
}
