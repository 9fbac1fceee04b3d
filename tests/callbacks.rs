//! Callbacks: the server calls the client on the connection the client opened.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{unique_endpoint, within};
use rpc_core::{CallContext, Client, ClientConfig, RpcError, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why an installation did not happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InstallError {
    /// The front end said no.
    Declined,
    /// The front end could not be asked.
    NoFrontEnd(String),
}

/// What a front end serves to its installer.
#[rpc_core::service]
pub trait Prompt {
    /// Asks the user.
    async fn confirm(&self, question: String) -> bool;
    /// Progress of the installation; one-way.
    #[rpc(oneway)]
    async fn progress(&self, done: u64, total: u64);
    /// Calls the installer back with `nest(depth)`.
    async fn check(&self, depth: u32) -> u32;
    /// Reports the deadline it was given, then waits until dropped or released.
    async fn wait(&self) -> u32;
}

/// An installer that asks its front end.
#[rpc_core::service(callbacks = Prompt)]
pub trait Installer {
    /// Installs `package` once the front end confirms, reporting progress.
    async fn install(&self, package: String) -> Result<u64, InstallError>;
    /// `depth` levels of calls back and forth: 0 answers at once.
    async fn nest(&self, depth: u32) -> u32;
    /// Keeps a handle to the caller's front end.
    async fn keep(&self) -> u32;
    /// Calls the front end's `wait`.
    async fn ask_waiting(&self) -> Result<u32, String>;
}

/// What the front ends saw.
#[derive(Default)]
struct FrontEndSeen {
    progress: Mutex<Vec<(u64, u64)>>,
    deadlines: Mutex<Vec<Option<Instant>>>,
    waits_dropped: AtomicU32,
    /// Questions asked so far.
    asked: AtomicU32,
    /// Whether `confirm` waits for `release` before it answers.
    hold: std::sync::atomic::AtomicBool,
    release: Notify,
    changed: Notify,
}

impl FrontEndSeen {
    async fn until(&self, what: &str, done: impl Fn(&FrontEndSeen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }
}

struct FrontEnd {
    answer: bool,
    seen: Arc<FrontEndSeen>,
}

struct WaitGuard(Arc<FrontEndSeen>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.waits_dropped.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Prompt for FrontEnd {
    async fn confirm(&self, question: String) -> bool {
        assert!(question.starts_with("install "));
        let released = self.seen.release.notified();
        self.seen.asked.fetch_add(1, Ordering::SeqCst);
        self.seen.changed.notify_waiters();
        if self.seen.hold.load(Ordering::SeqCst) {
            released.await;
        }
        self.answer
    }

    async fn progress(&self, done: u64, total: u64) {
        self.seen.progress.lock().expect("lock").push((done, total));
        self.seen.changed.notify_waiters();
    }

    async fn check(&self, depth: u32) -> u32 {
        let context = CallContext::current().expect("in a call");
        let installer: InstallerClient = context.callbacks().expect("the server");
        installer.nest(depth).await.expect("nest") + 1
    }

    async fn wait(&self) -> u32 {
        let deadline = CallContext::current().and_then(|c| c.deadline());
        self.seen.deadlines.lock().expect("lock").push(deadline);
        self.seen.changed.notify_waiters();
        let _guard = WaitGuard(Arc::clone(&self.seen));
        std::future::pending().await
    }
}

/// The installer keeps the front ends it was given.
#[derive(Default)]
struct InstallerImpl {
    kept: Mutex<Vec<PromptClient>>,
}

fn front_end() -> Result<PromptClient, InstallError> {
    let context = CallContext::current().ok_or(InstallError::NoFrontEnd("no call".into()))?;
    context
        .callbacks()
        .map_err(|e| InstallError::NoFrontEnd(e.to_string()))
}

impl Installer for Arc<InstallerImpl> {
    async fn install(&self, package: String) -> Result<u64, InstallError> {
        let gui = front_end()?;
        let confirmed = gui.confirm(format!("install {package}?")).await;
        if !confirmed.map_err(|e| InstallError::NoFrontEnd(e.to_string()))? {
            return Err(InstallError::Declined);
        }
        for done in 1..=3 {
            gui.progress(done, 3)
                .await
                .map_err(|e| InstallError::NoFrontEnd(e.to_string()))?;
        }
        Ok(package.len() as u64)
    }

    async fn nest(&self, depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        let gui = front_end().expect("a front end");
        gui.check(depth - 1).await.expect("check") + 1
    }

    async fn keep(&self) -> u32 {
        let gui = front_end().expect("a front end");
        let mut kept = self.kept.lock().expect("lock");
        kept.push(gui);
        kept.len() as u32
    }

    async fn ask_waiting(&self) -> Result<u32, String> {
        let gui = front_end().map_err(|e| format!("{e:?}"))?;
        gui.wait().await.map_err(|e| e.to_string())
    }
}

type Served = common::Served<InstallerImpl>;

/// Serves the installer with `config`.
fn serve(config: &ServerConfig) -> Served {
    Served::start(InstallerServer::new, config)
}

/// A client of `served` whose front end answers every question with `answer`.
async fn client(served: &Served, answer: bool, seen: &Arc<FrontEndSeen>) -> InstallerClient {
    let mut config = ClientConfig::new();
    config.serve_callbacks(PromptServer::new(FrontEnd {
        answer,
        seen: Arc::clone(seen),
    }));
    served.client(&config).await
}

async fn install_asks_and_reports(installer: &InstallerClient, seen: &FrontEndSeen) {
    assert_eq!(
        installer.install("editor".into()).await.expect("call"),
        Ok(6)
    );
    // One-way progress arrives in order; it was sent before the reply, but runs on its own.
    seen.until("the progress", |seen| {
        seen.progress.lock().expect("lock").len() == 3
    })
    .await;
    assert_eq!(
        *seen.progress.lock().expect("lock"),
        [(1, 3), (2, 3), (3, 3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_its_client_and_reports_progress() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    let yes = client(&served, true, &seen).await;
    install_asks_and_reports(&yes, &seen).await;
    let no = client(&served, false, &Arc::default()).await;
    assert_eq!(
        no.install("x".into()).await.expect("call"),
        Err(InstallError::Declined)
    );
}

/// A handler awaiting a callback whose handler calls the server again, three levels deep, on a
/// server and a client that each run one call at a time: each callback waiting for its reply
/// lends its caller's slot (up to the limit again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_nest_without_deadlock_at_one_call_in_flight() {
    let served = serve(ServerConfig::new().max_in_flight(1));
    let seen = Arc::new(FrontEndSeen::default());
    let mut config = ClientConfig::new();
    config
        .serve_callbacks(PromptServer::new(FrontEnd {
            answer: true,
            seen: Arc::clone(&seen),
        }))
        .max_callbacks_in_flight(1);
    let installer: InstallerClient = rpc_transport::connect_with(&served.endpoint, &config)
        .await
        .expect("connect");
    // nest(1) on the server -> check(0) on the client -> nest(0) on the server.
    let depth = within("the nested calls", installer.nest(1)).await;
    assert_eq!(depth.expect("call"), 2);
    // Again, and beside it a plain call that waits its turn.
    let (nested, plain) = tokio::join!(installer.nest(1), installer.nest(0));
    assert_eq!((nested.expect("call"), plain.expect("call")), (2, 0));
}

/// A callback made inside a call carries that call's deadline at the latest, and is dropped on
/// the client when the call is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_inherit_the_deadline_and_are_cancelled_with_their_call() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    let installer = client(&served, true, &seen).await;
    let timeout = Duration::from_secs(20);
    let started = Instant::now();
    let call = tokio::spawn({
        let installer = installer.handle().with_timeout(Some(timeout));
        let installer = <InstallerClient as rpc_core::Client>::from_handle(installer);
        async move { installer.ask_waiting().await }
    });
    seen.until("the callback", |seen| {
        !seen.deadlines.lock().expect("lock").is_empty()
    })
    .await;
    let deadline = seen.deadlines.lock().expect("lock")[0].expect("a deadline");
    // Each hop passes on the time left, so the callback's deadline is at most the call's
    // timeout after any moment since the callback started. Without the inheritance it would
    // be the default 30 s from the callback's start.
    assert!(
        deadline <= Instant::now() + timeout,
        "the callback's deadline is {:?} after the call's start",
        deadline - started
    );
    call.abort();
    seen.until("the callback to be dropped", |seen| {
        seen.waits_dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(installer.nest(0).await.expect("call"), 0);
}

/// Handles kept after their client leaves fail at once; a server that keeps the handles of
/// many clients sees each one go, and the others still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_handles_see_their_client_leave() {
    let served = serve(&ServerConfig::default());
    let (first_seen, second_seen) = (Arc::new(FrontEndSeen::default()), Arc::default());
    let first = client(&served, true, &first_seen).await;
    let second = client(&served, false, &second_seen).await;
    assert_eq!(first.keep().await.expect("keep"), 1);
    assert_eq!(second.keep().await.expect("keep"), 2);
    let kept: Vec<PromptClient> = served.seen.kept.lock().expect("lock").clone();
    drop(first);
    within(
        "the first client to be seen leaving",
        kept[0]
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
    let started = Instant::now();
    let refused = kept[0].confirm("install again?".into()).await;
    assert!(
        matches!(refused, Err(RpcError::ConnectionClosed)),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "failed at once");
    assert!(!kept[1].handle().is_closed());
    assert!(!kept[1].confirm("install x?".into()).await.expect("call"));
    kept[1].progress(7, 9).await.expect("send");
    second_seen
        .until("the broadcast", |seen| {
            !seen.progress.lock().expect("lock").is_empty()
        })
        .await;
}

/// A connection that the server's shutdown timeout closes while a handler waits on a callback:
/// the handles to the client's callbacks that handlers kept fail and see the connection close,
/// and the client sees it close too, rather than both waiting on a connection no task serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_shutdown_timeout_fails_kept_handles() {
    let served = serve(ServerConfig::new().shutdown_timeout(Duration::from_millis(10)));
    let seen = Arc::new(FrontEndSeen::default());
    let installer = client(&served, true, &seen).await;
    assert_eq!(installer.keep().await.expect("keep"), 1);
    let kept: Vec<PromptClient> = served.seen.kept.lock().expect("lock").clone();
    // A handler that waits on a callback that never answers: the drain cannot finish.
    let waiting = tokio::spawn({
        let installer = installer.clone();
        async move { installer.ask_waiting().await }
    });
    seen.until("the callback to wait", |seen| {
        !seen.deadlines.lock().expect("lock").is_empty()
    })
    .await;
    served.shutdown.cancel();
    within(
        "the kept handle to see the connection close",
        kept[0]
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
    let refused = within(
        "a call on the kept handle",
        kept[0].confirm("again?".into()),
    )
    .await;
    assert!(
        matches!(refused, Err(RpcError::ConnectionClosed)),
        "{refused:?}"
    );
    within(
        "the client to see the connection close",
        installer
            .handle()
            .connection()
            .expect("a connection")
            .closed(),
    )
    .await;
    let ended = within("the waiting call to end", waiting)
        .await
        .expect("join");
    assert!(ended.is_err(), "{ended:?}");
}

/// A server shutting down answers the calls in flight, also those that wait on their client:
/// it goes on reading, so that a callback's reply reaches the handler waiting for it, while a
/// call sent after the goodbye is refused with `ShuttingDown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_still_takes_the_replies_its_calls_wait_on() {
    let served = serve(&ServerConfig::default());
    let seen = Arc::new(FrontEndSeen::default());
    seen.hold.store(true, Ordering::SeqCst);
    let installer = client(&served, true, &seen).await;
    let install = tokio::spawn({
        let installer = installer.clone();
        async move { installer.install("pkg".into()).await }
    });
    seen.until("the question", |seen| {
        seen.asked.load(Ordering::SeqCst) == 1
    })
    .await;
    served.shutdown.cancel();
    // Calls until one is refused: the server is draining (or the client has its goodbye).
    let refused = loop {
        match within("a call while shutting down", installer.nest(0)).await {
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(
            refused,
            RpcError::ShuttingDown | RpcError::Remote(rpc_core::protocol::WireError::ShuttingDown)
        ),
        "{refused:?}"
    );
    seen.release.notify_one();
    let installed = within("the install", install).await.expect("join");
    assert_eq!(installed.expect("call"), Ok(3));
    assert_eq!(seen.progress.lock().expect("lock").len(), 3);
}

/// A client must serve the callbacks its service declares, and only those: else connecting
/// fails before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_declared_callbacks_is_refused_at_connect() {
    let served = serve(&ServerConfig::default());
    let plain =
        rpc_transport::connect_with::<InstallerClient>(&served.endpoint, &ClientConfig::new())
            .await;
    assert!(
        matches!(
            plain,
            Err(rpc_transport::ConnectError::Handshake(
                RpcError::CallbacksMismatch {
                    service: "Installer",
                    declared: Some("Prompt"),
                    served: None,
                }
            ))
        ),
        "{plain:?}"
    );
    let mut config = ClientConfig::new();
    config.serve_callbacks(InstallerServer::new(Arc::new(InstallerImpl::default())));
    let wrong = rpc_transport::connect_with::<InstallerClient>(&served.endpoint, &config).await;
    assert!(
        matches!(
            wrong,
            Err(rpc_transport::ConnectError::Handshake(
                RpcError::CallbacksMismatch {
                    served: Some("Installer"),
                    ..
                }
            ))
        ),
        "{wrong:?}"
    );
}

/// Another shape of the callback service, under the same names.
mod other {
    /// `Prompt` with another `confirm`.
    #[rpc_core::service(name = "Prompt")]
    pub(crate) trait PromptV2 {
        /// Asks with a default answer.
        async fn confirm(&self, question: String, default: bool) -> bool;
    }

    /// `Installer`, calling back `PromptV2`.
    #[allow(dead_code)]
    #[rpc_core::service(name = "Installer", callbacks = PromptV2)]
    pub(crate) trait InstallerV2 {
        /// As `Installer::install`.
        async fn install(&self, package: String) -> Result<u64, super::InstallError>;
        /// As `Installer::nest`.
        async fn nest(&self, depth: u32) -> u32;
        /// As `Installer::keep`.
        async fn keep(&self) -> u32;
        /// As `Installer::ask_waiting`.
        async fn ask_waiting(&self) -> Result<u32, String>;
    }

    pub(crate) struct Yes;

    impl PromptV2 for Yes {
        async fn confirm(&self, _question: String, _default: bool) -> bool {
            true
        }
    }
}

/// The fingerprint covers the callback service: a client whose callbacks differ from the
/// server's expectation is rejected at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_other_callbacks_is_rejected_at_connect() {
    let served = serve(&ServerConfig::default());
    let mut config = ClientConfig::new();
    config.serve_callbacks(other::PromptV2Server::new(other::Yes));
    let rejected =
        rpc_transport::connect_with::<other::InstallerV2Client>(&served.endpoint, &config).await;
    assert!(
        matches!(
            rejected,
            Err(rpc_transport::ConnectError::Handshake(RpcError::Rejected(
                rpc_core::protocol::Rejection::FingerprintMismatch { .. }
            )))
        ),
        "{rejected:?}"
    );
}

/// The same over two one-way pipes (as a child's stdio carries it) and in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_over_pipes_and_memory() {
    let (to_server_read, to_server_write) = tokio::io::simplex(64 * 1024);
    let (to_client_read, to_client_write) = tokio::io::simplex(64 * 1024);
    tokio::spawn(rpc_transport::pipes::serve_pipes(
        to_server_read,
        to_client_write,
        InstallerServer::new(Arc::new(InstallerImpl::default())),
        &ServerConfig::default(),
    ));
    let pipes_seen = Arc::new(FrontEndSeen::default());
    let mut config = ClientConfig::new();
    config.serve_callbacks(PromptServer::new(FrontEnd {
        answer: true,
        seen: Arc::clone(&pipes_seen),
    }));
    let over_pipes: InstallerClient =
        rpc_transport::pipes::connect_pipes(to_client_read, to_server_write, &config)
            .await
            .expect("connect");
    install_asks_and_reports(&over_pipes, &pipes_seen).await;
    let memory_seen = Arc::new(FrontEndSeen::default());
    let mut config = ClientConfig::new();
    config.serve_callbacks(PromptServer::new(FrontEnd {
        answer: true,
        seen: Arc::clone(&memory_seen),
    }));
    let in_memory: InstallerClient = rpc_core::memory::serve_and_connect_with(
        InstallerServer::new(Arc::new(InstallerImpl::default())),
        &ServerConfig::default(),
        &config,
    )
    .await
    .expect("connect");
    install_asks_and_reports(&in_memory, &memory_seen).await;
    assert_eq!(in_memory.nest(4).await.expect("call"), 8);
}

/// The same over a pipe pair (FIFOs on Unix, two named pipes on Windows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_over_a_pipe_pair() {
    let (endpoint, _dir) = unique_endpoint();
    let server = rpc_transport::pair::PairServer::bind(&endpoint).expect("bind");
    tokio::spawn(server.serve(
        InstallerServer::new(Arc::new(InstallerImpl::default())),
        &ServerConfig::default(),
    ));
    let seen = Arc::new(FrontEndSeen::default());
    let mut config = ClientConfig::new();
    config.serve_callbacks(PromptServer::new(FrontEnd {
        answer: true,
        seen: Arc::clone(&seen),
    }));
    let installer: InstallerClient = within(
        "connecting",
        rpc_transport::pair::connect(&endpoint, &config),
    )
    .await
    .expect("connect");
    install_asks_and_reports(&installer, &seen).await;
    assert_eq!(installer.nest(3).await.expect("call"), 6);
}

/// What a front end serves that never answers.
#[rpc_core::service]
pub trait Silent {
    /// Never answers.
    async fn hang(&self) -> u32;
}

/// A service whose one-way method calls its client back.
#[rpc_core::service(callbacks = Silent)]
pub trait Relay {
    /// Calls the client's `hang`, and reports how that call ended.
    #[rpc(oneway)]
    async fn relay(&self);
}

struct SilentImpl(Arc<Notify>);

impl Silent for SilentImpl {
    async fn hang(&self) -> u32 {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// How the relay's call to its client ended.
#[derive(Default)]
struct RelaySeen {
    ended: Mutex<Option<Result<u32, RpcError>>>,
    changed: Notify,
}

struct RelayImpl(Arc<RelaySeen>);

impl Relay for RelayImpl {
    async fn relay(&self) {
        let context = CallContext::current().expect("in a call");
        let client: SilentClient = context.callbacks().expect("the client");
        let outcome = client.hang().await;
        *self.0.ended.lock().expect("lock") = Some(outcome);
        self.0.changed.notify_waiters();
    }
}

/// A client that leaves while a one-way handler waits on its callback: the callback's call
/// fails at once, rather than at its deadline (the one-way handler is not stopped with the
/// client's calls, and would hold the connection's task that long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_fails_the_callbacks_waited_on() {
    let served = common::Served::<RelaySeen>::start(
        |seen| RelayServer::new(RelayImpl(seen)),
        &ServerConfig::default(),
    );
    let hanging = Arc::new(Notify::new());
    let mut config = ClientConfig::new();
    config.serve_callbacks(SilentServer::new(SilentImpl(Arc::clone(&hanging))));
    let relay: RelayClient = served.client(&config).await;
    relay.relay().await.expect("sent");
    within("the callback to be called", hanging.notified()).await;
    drop(relay);
    let seen = &served.seen;
    common::until_notified("the callback's call to end", &seen.changed, || {
        seen.ended.lock().expect("lock").is_some()
    })
    .await;
    let ended = seen.ended.lock().expect("lock").take();
    assert!(
        matches!(ended, Some(Err(RpcError::ConnectionClosed))),
        "{ended:?}"
    );
}
