//! The Windows service example under the service manager: created, started, called, stopped
//! gracefully, deleted, with `sc.exe` (Wine has a service manager and `sc`).
#![cfg(windows)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rpc_core::ClientConfig;
use rpc_transport::{ConnectError, Endpoint};

/// The example's service, as its clients declare it.
#[rpc_core::service]
pub trait Calc {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Who the caller is, as the server sees it.
    async fn peer(&self) -> String;
}

/// How long the service manager gets for each step.
const PATIENCE: Duration = Duration::from_secs(30);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    dir.join("examples").join(format!("{name}.exe"))
}

/// Runs `sc` with `args`; its output.
fn sc(args: &[&str]) -> (bool, String) {
    let output = Command::new("sc").args(args).output().expect("run sc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Deletes the service when the test ends, whatever happened.
struct Registered(String);

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = sc(&["stop", &self.0]);
        let _ = sc(&["delete", &self.0]);
    }
}

/// Waits until `done` returns a value, polling every 50 ms; fails the test after [`PATIENCE`].
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut done: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = done().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_serves_and_stops_when_the_service_manager_stops_it() {
    let name = format!("rpc-test-svc-{}", std::process::id());
    let exe = example("windows_service");
    assert!(exe.exists(), "{} not built", exe.display());
    let bin_path = format!("\"{}\" service {name} {name}", exe.display());
    let (created, text) = sc(&["create", &name, "binPath=", &bin_path]);
    assert!(created, "sc create: {text}");
    let _registered = Registered(name.clone());
    // The service manager of a new Wine prefix refuses starts until the prefix's first boot
    // has finished (the script waits for it); a start refused meanwhile is tried again within
    // the patience. A service that is already running (1056) has started.
    until("sc start", || async {
        let (started, text) = sc(&["start", &name]);
        (started || text.contains("1056")).then_some(())
    })
    .await;

    let endpoint = Endpoint::new(&name).expect("name");
    let config = ClientConfig::default();
    let calc: CalcClient = until("the service to serve", || async {
        match rpc_transport::connect_with(&endpoint, &config).await {
            Ok(calc) => Some(calc),
            Err(ConnectError::NotFound { .. }) => None,
            Err(other) => panic!("connect: {other}"),
        }
    })
    .await;
    assert_eq!(calc.add(2, 3).await.expect("add"), 5);
    println!("the service sees {}", calc.peer().await.expect("peer"));
    drop(calc);

    let (stopped, text) = sc(&["stop", &name]);
    assert!(stopped, "sc stop: {text}");
    // Gracefully: the service reports itself stopped, and its endpoint is gone.
    until("the service to report STOPPED", || async {
        let (_, text) = sc(&["query", &name]);
        text.contains("STOPPED").then_some(())
    })
    .await;
    let after = rpc_transport::connect_with::<CalcClient>(&endpoint, &config).await;
    assert!(
        matches!(after, Err(ConnectError::NotFound { .. })),
        "the endpoint outlived the service: {:?}",
        after.map(|_| ())
    );
}
