//! Callbacks at connect (a client must serve the callbacks its service declares), over every
//! transport, and when the client leaves while a handler waits on one.

mod common;
mod installer_support;

use std::sync::{Arc, Mutex};

use common::{unique_endpoint, within};
use installer_support::{
    install_asks_and_reports, serve, FrontEnd, FrontEndSeen, InstallerClient, InstallerImpl,
    InstallerServer, PromptServer,
};
use rpc_core::{CallContext, ClientConfig, RpcError, ServerConfig};
use tokio::sync::Notify;

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
        async fn install(
            &self,
            package: String,
        ) -> Result<u64, crate::installer_support::InstallError>;
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
