//! The installer and its front end that the callback tests share: a service whose handlers
//! call back into the client that called them.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{CallContext, Client, ClientConfig, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::common;

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
pub(crate) struct FrontEndSeen {
    pub(crate) progress: Mutex<Vec<(u64, u64)>>,
    pub(crate) deadlines: Mutex<Vec<Option<Instant>>>,
    pub(crate) waits_dropped: AtomicU32,
    /// Questions asked so far.
    pub(crate) asked: AtomicU32,
    /// Whether `confirm` waits for `release` before it answers.
    pub(crate) hold: std::sync::atomic::AtomicBool,
    pub(crate) release: Notify,
    pub(crate) changed: Notify,
    /// While true, `progress` waits before it records.
    pub(crate) progress_held: watch::Sender<bool>,
    /// `progress` handlers dropped before they recorded.
    pub(crate) progress_dropped: AtomicU32,
    /// The timeout of the handle to the installer that each `check` made.
    pub(crate) check_timeouts: Mutex<Vec<Option<Duration>>>,
}

impl FrontEndSeen {
    pub(crate) async fn until(&self, what: &str, done: impl Fn(&FrontEndSeen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }
}

pub(crate) struct FrontEnd {
    pub(crate) answer: bool,
    pub(crate) seen: Arc<FrontEndSeen>,
}

pub(crate) struct WaitGuard(Arc<FrontEndSeen>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.waits_dropped.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Counts a `progress` handler dropped before it recorded, unless disarmed.
struct ProgressGuard(Option<Arc<FrontEndSeen>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(seen) = &self.0 {
            seen.progress_dropped.fetch_add(1, Ordering::SeqCst);
            seen.changed.notify_waiters();
        }
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
        let mut unfinished = ProgressGuard(Some(Arc::clone(&self.seen)));
        let mut held = self.seen.progress_held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        unfinished.0 = None;
        self.seen.progress.lock().expect("lock").push((done, total));
        self.seen.changed.notify_waiters();
    }

    async fn check(&self, depth: u32) -> u32 {
        let context = CallContext::current().expect("in a call");
        let installer: InstallerClient = context.callbacks().expect("the server");
        self.seen
            .check_timeouts
            .lock()
            .expect("lock")
            .push(installer.handle().timeout());
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
pub(crate) struct InstallerImpl {
    pub(crate) kept: Mutex<Vec<PromptClient>>,
}

pub(crate) fn front_end() -> Result<PromptClient, InstallError> {
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

pub(crate) type Served = common::Served<InstallerImpl>;

/// Serves the installer with `config`.
pub(crate) fn serve(config: &ServerConfig) -> Served {
    Served::start(InstallerServer::new, config)
}

/// A client of `served` whose front end answers every question with `answer`.
pub(crate) async fn client(
    served: &Served,
    answer: bool,
    seen: &Arc<FrontEndSeen>,
) -> InstallerClient {
    let mut config = ClientConfig::new();
    config.serve_callbacks(PromptServer::new(FrontEnd {
        answer,
        seen: Arc::clone(seen),
    }));
    served.client(&config).await
}

pub(crate) async fn install_asks_and_reports(installer: &InstallerClient, seen: &FrontEndSeen) {
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
