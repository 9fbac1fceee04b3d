//! Shared pieces of the end-to-end tests: a test service, servers on private endpoints, and
//! (in `raw_peer`) a raw peer that speaks the protocol by hand.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rpc_core::{Client, ClientConfig, ServerConfig};
use rpc_transport::{Endpoint, Server};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod raw_peer;
// Each test binary uses some of them.
#[allow(unused_imports)]
pub use raw_peer::{
    frame, hello, serve_in_memory, stream_item, welcome_client, BoxRead, BoxWrite, RawPeer,
};

/// How long a test waits for an event before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A server of any service on a private endpoint, for tests of their own service.
pub struct Served<T> {
    /// What the service's implementation shares with the test.
    pub seen: std::sync::Arc<T>,
    pub endpoint: Endpoint,
    /// The server's address, for raw peers.
    pub address: String,
    pub shutdown: rpc_core::CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl<T> Served<T> {
    /// Serves `service`, made of what it shares with the test, with `config`.
    pub fn start<D: rpc_core::Dispatch>(
        service: impl FnOnce(std::sync::Arc<T>) -> D,
        config: &ServerConfig,
    ) -> Self
    where
        T: Default,
    {
        let seen = std::sync::Arc::new(T::default());
        let (endpoint, dir) = unique_endpoint();
        let server = Server::bind_with(&endpoint, service(std::sync::Arc::clone(&seen)), config)
            .expect("bind");
        let address = server.address();
        let shutdown = server.shutdown_handle();
        tokio::spawn(server.run());
        Self {
            seen,
            endpoint,
            address,
            shutdown,
            _dir: dir,
        }
    }

    /// A client of the service, with `config`.
    pub async fn client<C: Client>(&self, config: &ClientConfig) -> C {
        rpc_transport::connect_with(&self.endpoint, config)
            .await
            .expect("connect")
    }
}

/// Waits until `done` holds, checking again each time `changed` is notified (with
/// `notify_waiters`), failing the test if it takes longer than [`PATIENCE`].
pub async fn until_notified(what: &str, changed: &tokio::sync::Notify, done: impl Fn() -> bool) {
    within(what, async {
        loop {
            // Created before the check: a notification from then on is not missed.
            let notified = changed.notified();
            if done() {
                return;
            }
            notified.await;
        }
    })
    .await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero,
    Overflow { a: i64, b: i64 },
}

/// A recursive type, for nesting attacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Nested {
    Leaf,
    Node(Box<Nested>),
}

#[rpc_core::service]
pub trait Probe {
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Checked multiplication with a typed error.
    async fn mul(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Divides with a typed error.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Records a line; one-way.
    #[rpc(oneway)]
    async fn record(&self, line: String);
    /// Sleeps, reporting start and drop to the test.
    async fn sleep(&self, tag: u32, ms: u64) -> u32;
    /// Echoes bytes.
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Counts the depth of a nested value.
    async fn depth(&self, value: Nested) -> u32;
    /// The caller as the server sees it: (pid, uid, sid).
    async fn whoami(&self) -> (Option<u32>, Option<u32>, Option<String>);
    /// Waits once, reports that it computes, then holds its thread (as a computing handler
    /// does) until the test calls [`release`] with the same tag.
    async fn compute(&self, tag: u32) -> u32;
    /// Yields once, then reports `n`; one-way.
    #[rpc(oneway)]
    async fn append(&self, n: u32);
    /// The numbers from 0 to `count`, as a stream.
    async fn ticks(&self, count: u32) -> rpc_core::Stream<u32>;
    /// The sum of a stream of numbers from the client.
    async fn sum(&self, numbers: rpc_core::Stream<u32>) -> u64;
    /// Takes a stream from the client and never reads it.
    async fn ignore(&self, numbers: rpc_core::Stream<u32>) -> u32;
}

/// Tags of [`Probe::compute`] calls that may finish.
static RELEASED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
static RELEASE: std::sync::Condvar = std::sync::Condvar::new();

/// Lets the `compute` call tagged `tag` finish.
pub fn release(tag: u32) {
    RELEASED.lock().unwrap_or_else(|e| e.into_inner()).push(tag);
    RELEASE.notify_all();
}

/// What the server-side handlers report.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Recorded(String),
    SleepStarted(u32),
    SleepFinished(u32),
    /// The handler future was dropped before finishing (cancelled or past its deadline).
    SleepDropped(u32),
    /// A `compute` handler holds its thread.
    Computing(u32),
    /// A one-way `append` took effect.
    Appended(u32),
}

pub struct ProbeImpl {
    events: mpsc::UnboundedSender<Event>,
}

impl ProbeImpl {
    /// A probe whose events nobody reads.
    pub fn new() -> Self {
        let (events, _) = mpsc::unbounded_channel();
        Self { events }
    }
}

struct DropGuard {
    tag: u32,
    finished: bool,
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let event = if self.finished {
            Event::SleepFinished(self.tag)
        } else {
            Event::SleepDropped(self.tag)
        };
        let _ = self.events.send(event);
    }
}

impl Probe for ProbeImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn mul(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_mul(b).ok_or(MathError::Overflow { a, b })
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError::DivisionByZero)
    }

    async fn record(&self, line: String) {
        let _ = self.events.send(Event::Recorded(line));
    }

    async fn sleep(&self, tag: u32, ms: u64) -> u32 {
        let _ = self.events.send(Event::SleepStarted(tag));
        let mut guard = DropGuard {
            tag,
            finished: false,
            events: self.events.clone(),
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.finished = true;
        tag
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn depth(&self, value: Nested) -> u32 {
        let mut depth = 0;
        let mut node = &value;
        while let Nested::Node(inner) = node {
            depth += 1;
            node = inner;
        }
        depth
    }

    async fn whoami(&self) -> (Option<u32>, Option<u32>, Option<String>) {
        let ctx = rpc_core::CallContext::current().expect("inside a handler");
        (ctx.peer().pid, ctx.peer().uid, ctx.peer().sid.clone())
    }

    async fn compute(&self, tag: u32) -> u32 {
        tokio::task::yield_now().await;
        let _ = self.events.send(Event::Computing(tag));
        // Holds the thread, bounded so that a broken test cannot hang the suite.
        let released = RELEASED.lock().unwrap_or_else(|e| e.into_inner());
        let (released, _) = RELEASE
            .wait_timeout_while(released, PATIENCE, |released| !released.contains(&tag))
            .unwrap_or_else(|e| e.into_inner());
        drop(released);
        tag
    }

    async fn append(&self, n: u32) {
        tokio::task::yield_now().await;
        let _ = self.events.send(Event::Appended(n));
    }

    async fn ticks(&self, count: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::iter(0..count)
    }

    async fn ignore(&self, numbers: rpc_core::Stream<u32>) -> u32 {
        let _kept = numbers;
        std::future::pending().await
    }

    async fn sum(&self, numbers: rpc_core::Stream<u32>) -> u64 {
        futures_util::StreamExt::fold(numbers, 0, |sum, n| async move { sum + u64::from(n) }).await
    }
}

/// A running test server on an endpoint of its own.
pub struct TestServer {
    pub endpoint: Endpoint,
    /// Where raw peers connect: the socket path or the pipe path.
    pub address: String,
    pub shutdown: rpc_core::CancellationToken,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// A directory of this test's own, closed to other users.
#[cfg(unix)]
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("rpc-test-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("tempdir")
}

/// An endpoint no other test uses: a name of its own, in the default place (the user's private
/// directory on Unix; pipe names on Windows are shared by every process of the machine, or of
/// the Wine instance, so the name carries the process id).
pub fn unique_endpoint() -> (Endpoint, Option<tempfile::TempDir>) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Process ids are reused from one test binary to the next (under Wine within seconds), so
    // the name also carries when this process made its first one.
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_micros())
    });
    let name = format!(
        "probe-{}-{started}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    (Endpoint::new(&name).expect("name"), None)
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&ServerConfig::default())
    }

    pub fn start_with(config: &ServerConfig) -> Self {
        let (endpoint, dir) = unique_endpoint();
        let mut server = Self::start_at(endpoint, config);
        server._dir = dir;
        server
    }

    pub fn start_at(endpoint: Endpoint, config: &ServerConfig) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let server = Server::bind_with(
            &endpoint,
            ProbeServer::new(ProbeImpl { events: tx }),
            config,
        )
        .expect("bind");
        let address = server.address();
        let shutdown = server.shutdown_handle();
        let task = tokio::spawn(server.run());
        Self {
            endpoint,
            address,
            shutdown,
            events,
            task,
            _dir: None,
        }
    }

    pub async fn client(&self) -> ProbeClient {
        rpc_transport::connect_with(&self.endpoint, &ClientConfig::default())
            .await
            .expect("connect")
    }

    pub async fn client_with(&self, config: &ClientConfig) -> ProbeClient {
        rpc_transport::connect_with(&self.endpoint, config)
            .await
            .expect("connect")
    }

    /// Waits for the next event matching `want`, skipping others.
    pub async fn expect_event(&mut self, want: &Event) {
        within(&format!("event {want:?}"), async {
            loop {
                match self.events.recv().await {
                    Some(event) if &event == want => return,
                    Some(_) => continue,
                    None => panic!("event channel closed before {want:?}"),
                }
            }
        })
        .await
    }

    /// Asserts the server still serves a fresh client.
    pub async fn assert_serving(&self) {
        let client = self.client().await;
        assert_eq!(
            within("a call on a fresh client", client.add(40, 2))
                .await
                .expect("call"),
            42
        );
    }
}

/// The names in `dir`, sorted.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
