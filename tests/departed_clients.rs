//! A client that sends one-way calls and leaves while its server is at its limit of handlers,
//! and so not reading: the server sees it go at once (its calls' handlers are dropped), and
//! still runs, in order, every one-way call it sent before it left.

mod common;

use std::sync::{Arc, Mutex};

use common::{until_notified, within};
use rpc_core::{ClientConfig, ServerConfig};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Work that waits for the test.
#[rpc_core::service]
pub trait Tally {
    /// Waits until the test lets it, then records `n`; one-way.
    #[rpc(oneway)]
    async fn count(&self, n: u32);
    /// Waits for ever; reports when it starts and when it is dropped.
    async fn hold(&self);
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
    const CALLS: u32 = 40;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let seen = Arc::new(Seen {
        may_count: Semaphore::new(0),
        counted: Mutex::new(Vec::new()),
        changed: Notify::new(),
        events: events_tx,
    });
    let (endpoint, _dir) = common::unique_endpoint();
    let server = rpc_transport::Server::bind_with(
        &endpoint,
        TallyServer::new(TallyImpl(Arc::clone(&seen))),
        ServerConfig::new().max_in_flight(2),
    )
    .expect("bind");
    tokio::spawn(server.run());
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
