//! What the FIFO-pair tests share: a server of the probe service in a private directory, and
//! ways to wait on peers that block or on files that change.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use crate::common::{self, within, ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::pair::{self, PairServer};
use rpc_transport::unix::EndpointExt;
use rpc_transport::{ConnectError, Endpoint};

/// A FIFO-pair server of the probe service, in a private directory of its own.
pub struct Served {
    pub endpoint: Endpoint,
    pub input: std::path::PathBuf,
    pub output: std::path::PathBuf,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub _dir: tempfile::TempDir,
}

/// Serves with the default settings.
pub fn serve() -> Served {
    serve_with(&ServerConfig::default())
}

/// Serves with `config`.
pub fn serve_with(config: &ServerConfig) -> Served {
    let dir = common::private_dir();
    let endpoint = Endpoint::new("fifo-probe")
        .expect("name")
        .in_dir(dir.path());
    let server = PairServer::bind(&endpoint).expect("bind");
    let (input, output) = server.paths();
    let (input, output) = (input.to_path_buf(), output.to_path_buf());
    let task = tokio::spawn(server.serve(ProbeServer::new(ProbeImpl::new()), config));
    Served {
        endpoint,
        input,
        output,
        task,
        _dir: dir,
    }
}

/// Connects a client, failing (not hanging) after the tests' patience.
pub async fn connect(served: &Served) -> Result<ProbeClient, ConnectError> {
    within(
        "connecting",
        pair::connect(&served.endpoint, &ClientConfig::default()),
    )
    .await
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

/// Runs `peer` on its own thread; waits for its result, failing (not hanging) after
/// [`common::PATIENCE`] if it blocks.
pub async fn on_thread<T: Send + 'static>(
    what: &str,
    peer: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(peer());
    });
    within(what, rx).await.expect("peer thread")
}

/// Waits until `done` holds, failing after [`common::PATIENCE`]; for changes that have no
/// event to wait on, such as a file a dropped client removes from its own task.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}
