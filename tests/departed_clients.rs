//! A client that sends one-way calls and leaves while its server is at its limit of handlers,
//! and so not reading: the server sees it go at once (its calls' handlers are dropped), and
//! still runs, in order, every one-way call it sent before it left, also when what it sent ends
//! inside a frame or the connection is reset (it left a reply unread).

mod common;

use std::sync::{Arc, Mutex};

use common::{frame, until_notified, within, RawPeer};
use rpc_core::protocol::Header;
use rpc_core::{Client, ClientConfig, ServerConfig};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Work that waits for the test.
#[rpc_core::service]
pub trait Tally {
    /// Waits until the test lets it, then records `n`; one-way.
    #[rpc(oneway)]
    async fn count(&self, n: u32);
    /// Waits for ever; reports when it starts and when it is dropped.
    async fn hold(&self);
    /// Answers at once.
    async fn ping(&self) -> u32;
}

/// The service's server, at two handlers, and what its handlers report.
fn serve() -> (
    rpc_transport::Endpoint,
    Option<tempfile::TempDir>,
    String,
    Arc<Seen>,
    mpsc::UnboundedReceiver<&'static str>,
) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let seen = Arc::new(Seen {
        may_count: Semaphore::new(0),
        counted: Mutex::new(Vec::new()),
        changed: Notify::new(),
        events: events_tx,
    });
    let (endpoint, dir) = common::unique_endpoint();
    let server = rpc_transport::Server::bind_with(
        &endpoint,
        TallyServer::new(TallyImpl(Arc::clone(&seen))),
        ServerConfig::new().max_in_flight(2),
    )
    .expect("bind");
    let address = server.address();
    tokio::spawn(server.run());
    (endpoint, dir, address, seen, events)
}

struct Seen {
    may_count: Semaphore,
    counted: Mutex<Vec<u32>>,
    changed: Notify,
    events: mpsc::UnboundedSender<&'static str>,
}

struct TallyImpl(Arc<Seen>);

/// Reports its drop.
struct Reported(mpsc::UnboundedSender<&'static str>);

impl Drop for Reported {
    fn drop(&mut self) {
        let _ = self.0.send("hold dropped");
    }
}

impl Tally for TallyImpl {
    async fn count(&self, n: u32) {
        if let Ok(permit) = self.0.may_count.acquire().await {
            permit.forget();
        }
        self.0.counted.lock().expect("lock").push(n);
        self.0.changed.notify_waiters();
    }

    async fn ping(&self) -> u32 {
        1
    }

    async fn hold(&self) {
        let _ = self.0.events.send("hold started");
        let _reported = Reported(self.0.events.clone());
        std::future::pending::<()>().await;
    }
}

/// At two handlers, a call that waits for ever and a one-way call that waits for the test
/// stop the server's reading; the client's other one-way calls wait unread when it leaves.
/// Before, the server dropped them unread once it saw the client close its end: one of 40
/// ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_sent_before_the_client_left_run_although_the_server_was_not_reading() {
    let (endpoint, _dir, _, seen, mut events) = serve();
    let client: TallyClient = rpc_transport::connect_with(&endpoint, &ClientConfig::default())
        .await
        .expect("connect");
    let hold = {
        let client = client.clone();
        tokio::spawn(async move { client.hold().await })
    };
    // Read before the one-way calls.
    assert_eq!(
        within("the hold to start", events.recv()).await,
        Some("hold started")
    );
    for n in 0..CALLS {
        within("a one-way call to be sent", client.count(n))
            .await
            .expect("sent");
    }
    // The hold's cancel goes out behind the one-way calls, unread; then the client leaves.
    hold.abort();
    drop(client);
    // Dropped when the server saw the client leave, not by the cancel, which it has not read.
    assert_eq!(
        within("the hold to be dropped", events.recv()).await,
        Some("hold dropped")
    );
    every_count_runs(&seen).await;
}

const CALLS: u32 = 40;

/// Lets the one-way calls run; fails unless each of the `CALLS` runs, in order.
async fn every_count_runs(seen: &Seen) {
    seen.may_count.add_permits(CALLS as usize);
    until_notified("every one-way call to run", &seen.changed, || {
        seen.counted.lock().expect("lock").len() == CALLS as usize
    })
    .await;
    assert_eq!(
        *seen.counted.lock().expect("lock"),
        (0..CALLS).collect::<Vec<_>>()
    );
}

/// A call frame (prefix included) of the method named `method`.
fn call(id: u64, method: &str) -> Vec<u8> {
    let method = TallyClient::SERVICE
        .method_named(method)
        .map(|m| m.id)
        .expect("a method");
    frame(
        &Header::Call {
            id,
            method,
            deadline_us: None,
        },
        &[],
    )
}

/// A raw client holds a call, sends the one-way calls and leaves; with `ping_unread`, it first
/// leaves the reply to a call unread (closing resets the connection then), with `cut_short`
/// what it sends ends inside a frame. The read error that ends what the server reads ends the
/// client's data, not the one-way calls: before, a reset ended the connection at once, and the
/// one-way handlers still running or waiting their turn were aborted (the variant that ends
/// inside a frame passed then too: its last handlers finish at their first poll, before the
/// error is read).
async fn raw_client_leaves(ping_unread: bool, cut_short: bool) {
    let (_endpoint, _dir, address, seen, mut events) = serve();
    let mut peer = RawPeer::handshake_for(&address, TallyClient::SERVICE).await;
    if ping_unread {
        peer.send_raw(&call(1, "ping")).await.expect("ping");
    }
    peer.send_raw(&call(2, "hold")).await.expect("hold");
    assert_eq!(
        within("the hold to start", events.recv()).await,
        Some("hold started")
    );
    let count = TallyClient::SERVICE
        .method_named("count")
        .map(|m| m.id)
        .expect("count");
    let mut bytes = Vec::new();
    for n in 0..CALLS {
        bytes.extend(frame(
            &Header::Notify { method: count },
            &postcard::to_stdvec(&(n,)).expect("encode"),
        ));
    }
    if cut_short {
        bytes.extend([9, 0, 0]);
    }
    peer.send_raw(&bytes).await.expect("send");
    drop(peer);
    assert_eq!(
        within("the hold to be dropped", events.recv()).await,
        Some("hold dropped")
    );
    every_count_runs(&seen).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_run_when_a_client_that_left_reset_the_connection() {
    raw_client_leaves(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_run_when_what_a_client_that_left_sent_ends_inside_a_frame() {
    raw_client_leaves(false, true).await;
}
