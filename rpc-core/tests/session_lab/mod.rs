//! The in-memory laboratory of the session tests: a store service, and a connector whose server
//! the test kills, takes down, or replaces by one of another interface or an older version.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead};
use rpc_core::protocol::Header;
use rpc_core::session::{Connect, Session, SessionConfig, SessionState};
use rpc_core::{
    CancellationToken, ClientConfig, ClientHandle, PeerInfo, RpcError, ServerConfig,
    ServiceDescriptor,
};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

/// A store whose calls the test can hold.
#[rpc_core::service]
pub trait Store {
    /// How many calls of `bump` have run.
    #[rpc(idempotent)]
    async fn get(&self) -> u64;
    /// Counts one more.
    async fn bump(&self) -> u64;
    /// Never answers on its first run; answers the number of runs after that.
    #[rpc(idempotent)]
    async fn stall_once(&self) -> u64;
    /// Never answers.
    async fn hang(&self) -> u64;
    /// `from`, `from + 1`, ... one each time the test releases one. A subscription: opening it
    /// again is harmless.
    #[rpc(idempotent)]
    async fn watch(&self, from: u64) -> rpc_core::Stream<u64>;
    /// The same, but a job's progress: opening it again would run the job again.
    async fn progress(&self, from: u64) -> rpc_core::Stream<u64>;
    /// The sum of the items, once they end; never answers if one of them is 0.
    async fn sum(&self, items: rpc_core::Stream<u64>) -> u64;
    /// Each item sent back as it comes.
    async fn echo(&self, items: rpc_core::Stream<u64>) -> rpc_core::Stream<u64>;
}

/// Another service: a server of it refuses a client of `Store` (another version of `Store`
/// itself would be welcomed, its methods bound one by one).
#[rpc_core::service(name = "OtherStore")]
pub trait OtherStore {
    /// Another result type than `Store::get`.
    async fn get(&self) -> String;
}

#[derive(Default)]
pub struct Shared {
    pub bumps: AtomicU64,
    pub stalls: AtomicU64,
    /// Handlers that started, by name.
    pub started: Mutex<Vec<&'static str>>,
    pub started_changed: Notify,
    /// Stream items the test lets out.
    pub release: watch::Sender<u64>,
    /// The `from` of every stream opened.
    pub opened: Mutex<Vec<u64>>,
    /// While true, `watch` does not answer (a server slow to open a stream).
    pub opens_held: watch::Sender<bool>,
}

impl Shared {
    fn start(&self, name: &'static str) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name);
        self.started_changed.notify_waiters();
    }

    pub async fn until_started(&self, name: &str, count: usize) {
        within(&format!("{count} runs of {name}"), async {
            loop {
                let changed = self.started_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let runs = self
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|n| **n == name)
                    .count();
                if runs >= count {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

#[derive(Clone)]
struct StoreImpl(Arc<Shared>);

impl Store for StoreImpl {
    async fn get(&self) -> u64 {
        self.0.start("get");
        self.0.bumps.load(Ordering::SeqCst)
    }

    async fn bump(&self) -> u64 {
        self.0.start("bump");
        self.0.bumps.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn stall_once(&self) -> u64 {
        self.0.start("stall_once");
        let runs = self.0.stalls.fetch_add(1, Ordering::SeqCst) + 1;
        if runs == 1 {
            std::future::pending::<()>().await;
        }
        runs
    }

    async fn hang(&self) -> u64 {
        self.0.start("hang");
        std::future::pending().await
    }

    async fn sum(&self, mut items: rpc_core::Stream<u64>) -> u64 {
        use futures_util::StreamExt;
        self.0.start("sum");
        let mut sum = 0;
        while let Some(item) = items.next().await {
            if item == 0 {
                std::future::pending::<()>().await;
            }
            sum += item;
        }
        sum
    }

    async fn echo(&self, items: rpc_core::Stream<u64>) -> rpc_core::Stream<u64> {
        self.0.start("echo");
        items
    }

    async fn progress(&self, from: u64) -> rpc_core::Stream<u64> {
        self.watch(from).await
    }

    async fn watch(&self, from: u64) -> rpc_core::Stream<u64> {
        self.0
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(from);
        self.0.start("watch");
        let _ = self.0.opens_held.subscribe().wait_for(|held| !held).await;
        let mut release = self.0.release.subscribe();
        release.mark_unchanged();
        rpc_core::Stream::new(futures_util::stream::unfold(
            (release, from),
            |(mut release, next)| async move {
                release.changed().await.ok()?;
                Some((next, (release, next + 1)))
            },
        ))
    }
}

struct Other;

/// An older version of `Store`: welcomed by a client of `Store`, whose other methods it does
/// not have.
#[rpc_core::service(name = "Store")]
pub trait OlderStore {
    /// As `Store::get`.
    #[rpc(idempotent)]
    async fn get(&self) -> u64;
}

impl OlderStore for Other {
    async fn get(&self) -> u64 {
        0
    }
}

impl OtherStore for Other {
    async fn get(&self) -> String {
        String::new()
    }
}

/// What the connector serves next.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Up,
    Down,
    OtherInterface,
    /// An older version of the same interface.
    Older,
}

/// Connects over in-memory pairs to a server the test controls.
#[derive(Clone)]
pub struct Lab {
    pub shared: Arc<Shared>,
    mode: Arc<Mutex<Mode>>,
    pub attempts: Arc<AtomicU64>,
    /// The server task of the live connection, to kill it.
    server: Arc<Mutex<Option<AbortHandle>>>,
    /// The shutdown signal of the live connection's server.
    shutdown: Arc<Mutex<Option<CancellationToken>>>,
    /// Told when a client reads a server's goodbye.
    pub goodbyes: Arc<Notify>,
    /// How many of the next connections the server drops as soon as the handshake is done.
    pub flaps: Arc<AtomicU64>,
}

/// A client's reader that tells when the server's goodbye arrives. On a current-thread
/// runtime, whoever waits for it runs after the client has taken the goodbye in.
struct Watched<R> {
    inner: R,
    goodbyes: Arc<Notify>,
}

impl<R: FrameRead> FrameRead for Watched<R> {
    async fn read_frame(&mut self, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        let frame = self.inner.read_frame(max_frame).await?;
        if let Some(frame) = &frame {
            if let Ok((Header::Goodbye { .. }, _)) = postcard::take_from_bytes::<Header>(frame) {
                self.goodbyes.notify_one();
            }
        }
        Ok(frame)
    }
}

impl Lab {
    pub fn new() -> Self {
        Self {
            shared: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Up)),
            attempts: Arc::default(),
            server: Arc::default(),
            shutdown: Arc::default(),
            goodbyes: Arc::default(),
            flaps: Arc::default(),
        }
    }

    /// Shuts the live connection's server down gracefully: it says goodbye, and stays open
    /// while its calls in flight finish.
    pub fn shut_down(&self) {
        if let Some(token) = self
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            token.cancel();
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Kills the live connection's server, as a crash would.
    pub fn kill(&self) {
        if let Some(server) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            server.abort();
        }
    }

    pub fn start(
        &self,
        config: &SessionConfig,
        timeout: Option<Duration>,
    ) -> (StoreClient, Session) {
        let mut client = ClientConfig::new();
        client.default_timeout(timeout);
        Session::start(self.clone(), &client, config)
    }
}

impl Connect for Lab {
    type Error = RpcError;

    async fn connect(&self, service: &'static ServiceDescriptor) -> Result<ClientHandle, RpcError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap_or_else(|e| e.into_inner());
        if mode == Mode::Down {
            return Err(RpcError::ConnectionClosed);
        }
        let ((server_reader, server_writer), (reader, writer)) = rpc_core::memory::pair();
        let shared = Arc::clone(&self.shared);
        let token = CancellationToken::new();
        *self.shutdown.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        let task = tokio::spawn(async move {
            let config = ServerConfig::default();
            let peer = PeerInfo::unknown();
            let _ = match mode {
                Mode::OtherInterface => {
                    let service = OtherStoreServer::new(Other);
                    rpc_core::serve_connection(
                        server_reader,
                        server_writer,
                        peer,
                        service,
                        &config,
                        &token,
                    )
                    .await
                }
                Mode::Older => {
                    let service = OlderStoreServer::new(Other);
                    rpc_core::serve_connection(
                        server_reader,
                        server_writer,
                        peer,
                        service,
                        &config,
                        &token,
                    )
                    .await
                }
                _ => {
                    let service = StoreServer::new(StoreImpl(shared));
                    rpc_core::serve_connection(
                        server_reader,
                        server_writer,
                        peer,
                        service,
                        &config,
                        &token,
                    )
                    .await
                }
            };
        });
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        let reader = Watched {
            inner: reader,
            goodbyes: Arc::clone(&self.goodbyes),
        };
        let handle = ClientHandle::connect(reader, writer, service, &ClientConfig::default()).await;
        let flap = self
            .flaps
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if flap {
            self.kill();
        }
        handle
    }

    fn is_permanent(&self, error: &RpcError) -> bool {
        matches!(error, RpcError::Rejected(_))
    }
}

pub const PATIENCE: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits until the session's state satisfies `done`; returns it.
pub async fn until(
    session: &Session,
    what: &str,
    done: impl Fn(&SessionState) -> bool,
) -> SessionState {
    let mut state = session.watch();
    within(what, async move {
        state
            .wait_for(|state| done(state))
            .await
            .map(|state| state.clone())
            .expect("session alive")
    })
    .await
}

pub fn connections(state: &SessionState) -> Option<u64> {
    match state {
        SessionState::Connected { connections, .. } => Some(*connections),
        _ => None,
    }
}

pub fn quick() -> SessionConfig {
    let mut config = SessionConfig::new();
    config
        .backoff_base(Duration::from_millis(5))
        .backoff_cap(Duration::from_millis(20));
    config
}
