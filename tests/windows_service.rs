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

/// A service that cannot serve tells the service manager why: it reports itself stopped with
/// an exit code of its own (`ERROR_SERVICE_SPECIFIC_ERROR`, 1066) rather than never reporting
/// at all. Its endpoint name is one it cannot take (Wine does not refuse a second first
/// instance of a pipe, so a name another server holds would not do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_serve_reports_itself_stopped_with_its_error() {
    let name = format!("rpc-test-svc-bad-{}", std::process::id());
    let exe = example("windows_service");
    assert!(exe.exists(), "{} not built", exe.display());
    let bin_path = format!("\"{}\" service {name} not/a/name", exe.display());
    let (created, text) = sc(&["create", &name, "binPath=", &bin_path]);
    assert!(created, "sc create: {text}");
    let _registered = Registered(name.clone());
    // Started until it has run and failed (a start refused while a new Wine prefix boots is
    // tried again); before its first start, its exit code is 1077, never started.
    let query = until("the service to report its failure", || async {
        let _ = sc(&["start", &name]);
        let (_, text) = sc(&["query", &name]);
        (text.contains("STOPPED") && text.contains("1066")).then_some(text)
    })
    .await;
    println!("{query}");
}

/// The same server on a console stops gracefully on Ctrl-Break: `serve` waits for the console's
/// events (Ctrl-C, Ctrl-Break, close, log-off, shutdown), and Ctrl-Break is the one another
/// process can send to a process group of its own. The console's closing, log-off and shutdown
/// cannot be sent by a program; they take the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_server_stops_gracefully_on_ctrl_break() {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::System::Console::{
        GenerateConsoleCtrlEvent, SetConsoleCtrlHandler, CTRL_BREAK_EVENT,
    };
    use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

    // The server shares this process's console, in a process group of its own: only processes
    // on one console can send each other its events. (Wine 8 sends none: a test process there
    // has no console, and one it makes itself or attaches to refuses to send the event.)
    let name = format!("rpc-test-console-{}", std::process::id());
    let mut server = std::process::Command::new(example("windows_service"))
        .args(["console", &name])
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start the console server");
    let endpoint = Endpoint::new(&name).expect("name");
    let config = ClientConfig::default();
    let calc: CalcClient = until("the console server to serve", || async {
        match rpc_transport::connect_with(&endpoint, &config).await {
            Ok(calc) => Some(calc),
            Err(ConnectError::NotFound { .. }) => None,
            Err(other) => panic!("connect: {other}"),
        }
    })
    .await;
    assert_eq!(calc.add(20, 22).await.expect("add"), 42);
    drop(calc);

    /// Keeps this process alive should the event reach it too.
    unsafe extern "system" fn ignore(_event: u32) -> i32 {
        1
    }
    // SAFETY: plain values; the group id is the server's process id (CREATE_NEW_PROCESS_GROUP);
    // `ignore` is a valid handler for the life of the process.
    let sent = unsafe {
        SetConsoleCtrlHandler(Some(ignore), 1);
        GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, server.id()) != 0
    };
    if !sent {
        let error = std::io::Error::last_os_error();
        let _ = server.kill();
        let _ = server.wait();
        println!("NOT CONFIRMED: Ctrl-Break could not be sent here ({error})");
        return;
    }
    // Polled, as the service manager is above: a std child has no exit to await.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the console server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "not a graceful stop: {status}");
    let after = rpc_transport::connect_with::<CalcClient>(&endpoint, &config).await;
    assert!(
        matches!(after, Err(ConnectError::NotFound { .. })),
        "the endpoint outlived the server: {:?}",
        after.map(|_| ())
    );
}
