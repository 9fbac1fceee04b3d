//! Sessions over real endpoints, against a daemon *process* (`examples/session_daemon`) that the
//! test kills and starts again: calls in a loop never hang, the session is back within its
//! backoff, the watch resumes with its gap marker, an incompatible daemon fails the session, a
//! flapping daemon is survived. Prints the reconnect timings of 20 restarts.

#[path = "../examples/session_daemon/service.rs"]
#[allow(unreachable_pub, dead_code)]
mod service;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::session::{Session, SessionConfig, SessionState};
use rpc_core::{ClientConfig, RpcError, StreamReceiver};
use rpc_transport::{ConnectError, Endpoint};
use service::{SessionDaemonClient, Status};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a test waits for an event before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The backoff the tests use: a reconnect waits at most `CAP` once the daemon is back.
const BASE: Duration = Duration::from_millis(20);
const CAP: Duration = Duration::from_millis(250);

/// The deadline of the calls made in a loop during the restarts.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a loaded machine may add to a wait the code bounds: the checks below catch a wait that
/// is not bounded (a call that hangs, a backoff past its cap), not a slow machine.
const SLACK: Duration = Duration::from_secs(5);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The example binary that cargo builds next to the test binaries.
fn daemon_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir
        .join("examples")
        .join(format!("session_daemon{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "session-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `session_daemon MODE NAME` and waits until it is ready; killed when dropped (a
/// test that is done with it stops it with [`stop_cleanly`]).
async fn start(mode: &str, name: &str) -> Child {
    let mut child = Command::new(daemon_binary())
        .args([mode, name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the daemon");
    let stdout = child.stdout.take().expect("stdout");
    let line = within(
        "the daemon to start",
        BufReader::new(stdout).lines().next_line(),
    )
    .await;
    assert_eq!(line.expect("read").as_deref(), Some("ready"));
    child
}

/// Stops a daemon as its parent would (closing its stdin), so that it removes its socket and
/// lock file; it must exit successfully.
async fn stop_cleanly(mut daemon: Child) {
    drop(daemon.stdin.take());
    let status = within("the daemon to exit", daemon.wait()).await;
    assert!(status.expect("wait").success(), "the daemon failed");
}

fn session(name: &str) -> (SessionDaemonClient, Session) {
    let mut client = ClientConfig::new();
    client.default_timeout(Some(CALL_TIMEOUT));
    let mut config = SessionConfig::new();
    config.backoff_base(BASE).backoff_cap(CAP);
    rpc_transport::session::connect_with(&Endpoint::new(name).expect("name"), &client, &config)
}

/// Waits until the session's state satisfies `done`; returns it and when it was seen.
async fn until(
    session: &Session,
    what: &str,
    done: impl Fn(&SessionState) -> bool,
) -> (SessionState, Instant) {
    let mut states = session.watch();
    within(what, async move {
        let state = states
            .wait_for(|state| done(state))
            .await
            .expect("session alive")
            .clone();
        (state, Instant::now())
    })
    .await
}

fn connections(state: &SessionState) -> u64 {
    match state {
        SessionState::Connected { connections, .. } => *connections,
        _ => 0,
    }
}

/// The next status of the watch after its gap marker: from the daemon `pid`.
async fn resumed(watch: &mut StreamReceiver<Status>, pid: u32) {
    within("the watch to resume", async {
        loop {
            match watch.next().await {
                Some(Err(RpcError::StreamReopened)) => break,
                Some(Ok(_)) => {}
                other => panic!("the watch ended: {other:?}"),
            }
        }
        let status = watch.next().await;
        assert!(matches!(&status, Some(Ok(s)) if s.pid == pid), "{status:?}");
    })
    .await;
}

/// What the calls made in a loop saw, by kind.
#[derive(Default, Debug)]
struct Seen {
    ok: u32,
    /// `ConnectionLost { may_have_run: true }`.
    lost_may_have_run: u32,
    /// `ConnectionLost { may_have_run: false }`.
    lost_not_run: u32,
    /// `Disconnected` (not sent).
    disconnected: u32,
    /// `DeadlineExceeded`: sent on a connection that came back with little of the deadline
    /// left.
    deadline_exceeded: u32,
    /// Anything else, printed.
    other: Vec<String>,
    /// The longest a call took.
    longest: Duration,
}

impl Seen {
    fn record<T>(&mut self, outcome: &Result<T, RpcError>, took: Duration) {
        self.longest = self.longest.max(took);
        match outcome {
            Ok(_) => self.ok += 1,
            Err(RpcError::ConnectionLost {
                may_have_run: true, ..
            }) => self.lost_may_have_run += 1,
            Err(RpcError::ConnectionLost {
                may_have_run: false,
                ..
            }) => self.lost_not_run += 1,
            Err(RpcError::Disconnected(_)) => self.disconnected += 1,
            Err(RpcError::DeadlineExceeded) => self.deadline_exceeded += 1,
            Err(other) => self.other.push(other.to_string()),
        }
    }
}

/// Calls `status` (idempotent) and `run_job` (not) in a loop until `stop`.
fn call_in_a_loop(
    client: &SessionDaemonClient,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Seen, Seen)> {
    let (client, stop) = (client.clone(), Arc::clone(stop));
    tokio::spawn(async move {
        let (mut status, mut jobs) = (Seen::default(), Seen::default());
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let outcome = client.status().await;
            status.record(&outcome, started.elapsed());
            let started = Instant::now();
            let outcome = client.run_job(1).await;
            jobs.record(&outcome, started.elapsed());
        }
        (status, jobs)
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let index = (sorted.len().saturating_sub(1) * p).div_ceil(100);
    sorted.get(index).copied().unwrap_or_default()
}

/// The daemon process is killed and started again 20 times while a client calls in a loop and
/// watches: no call outlives its deadline, the idempotent call never fails with a lost
/// connection, the session is back within its backoff of the daemon being ready, and the
/// watch resumes with its gap marker each time. Prints the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_and_restarted_while_calling() {
    let name = unique_name();
    let mut daemon = start("serve", &name).await;
    let (client, session) = session(&name);
    within("connected", session.connected())
        .await
        .expect("connected");
    let mut watch = within("the watch", client.watch(5)).await.expect("watch");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = call_in_a_loop(&client, &stop);

    let restarts = 20;
    let (mut kill_to_back, mut ready_to_back) = (Vec::new(), Vec::new());
    for restart in 0..restarts {
        let killed = Instant::now();
        daemon.kill().await.expect("kill");
        daemon = start("serve", &name).await;
        let ready = Instant::now();
        let pid = daemon.id().expect("pid");
        let (_, back) = until(&session, "the session to be back", |s| {
            connections(s) == restart + 2
        })
        .await;
        kill_to_back.push(back - killed);
        ready_to_back.push(back.saturating_duration_since(ready));
        resumed(&mut watch, pid).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (status, jobs) = within("the calls to stop", calls).await.expect("joined");

    kill_to_back.sort();
    ready_to_back.sort();
    println!(
        "reconnect over {restarts} restarts: kill to reconnected p50 {:?} worst {:?}; daemon ready to reconnected p50 {:?} worst {:?} (backoff base {BASE:?} cap {CAP:?})",
        percentile(&kill_to_back, 50),
        kill_to_back.last().copied().unwrap_or_default(),
        percentile(&ready_to_back, 50),
        ready_to_back.last().copied().unwrap_or_default(),
    );
    println!("status (idempotent) calls during the restarts: {status:?}");
    println!("run_job calls during the restarts: {jobs:?}");

    for seen in [&status, &jobs] {
        assert!(seen.other.is_empty(), "{:?}", seen.other);
        assert!(
            seen.longest <= CALL_TIMEOUT + SLACK,
            "a call hung: {seen:?}"
        );
        assert!(seen.ok > 0, "{seen:?}");
    }
    assert_eq!(
        status.lost_may_have_run + status.lost_not_run,
        0,
        "idempotent calls are sent again"
    );
    // Back within the backoff once the daemon is ready: one capped wait, and the time to connect
    // (the timings printed above are the measure; this catches a backoff past its cap).
    let worst = ready_to_back.last().copied().unwrap_or_default();
    assert!(worst <= CAP + SLACK, "{worst:?}");
    stop_cleanly(daemon).await;
}

/// A daemon of another interface on the name fails the session with the reason; calls fail
/// with `SessionFailed`; once the right daemon is back, "retry now" connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_replaced_by_another_interface_fails_the_session() {
    let name = unique_name();
    let mut daemon = start("serve", &name).await;
    let (client, session) = session(&name);
    within("a call", client.status()).await.expect("status");

    daemon.kill().await.expect("kill");
    let mut other = start("serve-other", &name).await;
    let (failed, _) = until(&session, "the session to fail", |s| {
        matches!(s, SessionState::Failed { .. })
    })
    .await;
    let SessionState::Failed { error, .. } = failed else {
        unreachable!("waited for it");
    };
    let cause = error.downcast_ref::<ConnectError>();
    assert!(
        matches!(
            cause,
            Some(ConnectError::Handshake(RpcError::Rejected(
                rpc_core::protocol::Rejection::UnknownService { .. }
            )))
        ),
        "{cause:?}"
    );
    let outcome = within("a call", client.status()).await;
    assert!(
        matches!(outcome, Err(RpcError::SessionFailed(_))),
        "{outcome:?}"
    );
    // It stays failed: no attempt turns it back into connecting.
    assert!(matches!(session.state(), SessionState::Failed { .. }));

    other.kill().await.expect("kill");
    let daemon = start("serve", &name).await;
    session.retry_now();
    within("connected again", session.connected())
        .await
        .expect("connected");
    let status = within("a call", client.status()).await.expect("status");
    assert_eq!(Some(status.pid), daemon.id());
    stop_cleanly(daemon).await;
}

/// A daemon that keeps dying after a moment: the calls in a loop never hang and each ends with
/// its answer or a typed error; once the daemon stays up, the session is back and calls work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_daemon() {
    let name = unique_name();
    let mut daemon = start("serve", &name).await;
    let (client, session) = session(&name);
    within("connected", session.connected())
        .await
        .expect("connected");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = call_in_a_loop(&client, &stop);
    let lifetimes = Arc::new(Mutex::new(Vec::new()));
    for flap in 0..10u64 {
        // Up for 0 to 45 ms, down for 0 to 30 ms: mostly shorter than a call's life.
        let up = Duration::from_millis((flap * 37) % 50);
        let down = Duration::from_millis((flap * 13) % 31);
        tokio::time::sleep(up).await;
        daemon.kill().await.expect("kill");
        tokio::time::sleep(down).await;
        daemon = start("serve", &name).await;
        lifetimes.lock().unwrap_or_else(|e| e.into_inner()).push(up);
    }
    let pid = daemon.id();
    within("connected", session.connected())
        .await
        .expect("connected");
    let status = within("a call", client.status()).await.expect("status");
    assert_eq!(Some(status.pid), pid);
    stop.store(true, Ordering::Relaxed);
    let (status, jobs) = within("the calls to stop", calls).await.expect("joined");
    println!("flapping: status calls {status:?}; run_job calls {jobs:?}");
    for seen in [&status, &jobs] {
        assert!(seen.other.is_empty(), "{:?}", seen.other);
        assert!(
            seen.longest <= CALL_TIMEOUT + SLACK,
            "a call hung: {seen:?}"
        );
    }
    stop_cleanly(daemon).await;
}

/// The example's demo, as a user runs it: two restarts survived, then an incompatible daemon.
#[test]
fn session_daemon_demo_runs() {
    let output = std::process::Command::new(daemon_binary())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("watch: gap, reopened").count(),
        2,
        "{stdout}"
    );
    for expected in [
        "session: connected (connection 3)",
        "jobs done by this daemon: 1",
        "session failed: handshake failed: handshake rejected: service \"SessionDaemon\" is not served here",
        "a call now: Err(\"the session has failed\")",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

/// A blocking client over a session, from a thread without a runtime (a GUI's): its calls
/// wait for the session like the async client's, across a restart of the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_over_a_session() {
    let name = unique_name();
    let mut daemon = start("serve", &name).await;
    let mut client = ClientConfig::new();
    client.default_timeout(Some(PATIENCE));
    let endpoint = Endpoint::new(&name).expect("name");
    let (blocking, session) = std::thread::spawn(move || {
        rpc_transport::blocking::connect_session::<service::SessionDaemonBlockingClient>(
            &endpoint,
            &client,
            &SessionConfig::new(),
        )
    })
    .join()
    .expect("thread")
    .expect("session");
    let first = {
        let blocking = blocking.clone();
        tokio::task::spawn_blocking(move || blocking.status())
    };
    let first = within("a blocking call", first)
        .await
        .expect("joined")
        .expect("status");
    assert_eq!(Some(first.pid), daemon.id());

    daemon.kill().await.expect("kill");
    until(&session, "the loss", |s| !s.is_connected()).await;
    let during = tokio::task::spawn_blocking(move || blocking.status());
    let daemon = start("serve", &name).await;
    let second = within("a blocking call during the outage", during)
        .await
        .expect("joined");
    assert_eq!(second.map(|s| Some(s.pid)).ok(), Some(daemon.id()));
    stop_cleanly(daemon).await;
}
