//! A service in a real child process: over its stdio and over inherited pipes, with supervision.

#[path = "support/child_service.rs"]
mod child_service;
mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use child_service::HelperClient;
use common::within;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rpc_core::{ClientConfig, ProtocolError, RpcError};
use rpc_transport::child::{
    serve_inherited_pipes, spawn, spawn_with_pipes, ChildProcess, ChildServeError, SpawnError,
    PIPES_ENV,
};
use tokio::process::Command;

/// The `rpc-test-child` binary that cargo builds next to the test binaries.
fn child_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = profile_dir.join(format!("rpc-test-child{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} not built", path.display());
    path
}

fn child(mode: &[&str]) -> Command {
    let mut command = Command::new(child_program());
    command.args(mode);
    command
}

async fn start(mode: &[&str], config: &ClientConfig) -> (HelperClient, ChildProcess) {
    within("the child to start", spawn(child(mode), config))
        .await
        .expect("spawn the child")
}

/// A file for a child's stderr or stdout, read back after it exits.
fn capture() -> (tempfile::NamedTempFile, Stdio) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let stdio = Stdio::from(file.reopen().expect("reopen"));
    (file, stdio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_a_child_stdio() {
    let (helper, process) = start(&["stdio"], &ClientConfig::default()).await;
    assert_eq!(helper.add(2, 3).await.expect("add"), 5);
    let pid = helper.pid().await.expect("pid");
    assert_eq!(Some(pid), process.id());
    assert_ne!(pid, std::process::id());

    let mut calls: FuturesUnordered<_> = (0..1000i64)
        .map(|i| {
            let helper = helper.clone();
            async move { (i, helper.add(i, 1_000_000).await) }
        })
        .collect();
    let mut answered = 0;
    while let Some((i, result)) = within("1,000 calls", calls.next()).await {
        assert_eq!(result.expect("call"), i + 1_000_000);
        answered += 1;
    }
    assert_eq!(answered, 1000);
}

/// A child served over a socket as its stdio (as parents built on libuv give their children),
/// whose parent keeps the socket open and never says hello: the connection ends at the
/// handshake timeout, and the process exits as `main` returns, leaving the socket's flags as
/// they were. Before, a socket was read on tokio's blocking threads, and the runtime's shutdown
/// waited for the read under way until the parent wrote or closed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_served_over_a_socket_exits_when_its_connection_ends() {
    use std::os::fd::OwnedFd;

    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let child_output = child_end.try_clone().expect("clone");
    // The same open socket, as a shell that started the child would hold it.
    let shared = child_end.try_clone().expect("clone");
    let mut process = child(&["returns"])
        .stdin(Stdio::from(OwnedFd::from(child_end)))
        .stdout(Stdio::from(OwnedFd::from(child_output)))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the child");
    let status = within("the child to exit", process.wait())
        .await
        .expect("wait");
    assert!(status.success(), "{status}");
    // Made non-blocking while the child served, and put back as it was.
    // SAFETY: F_GETFL only reads the flags of a descriptor this test owns.
    let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&shared), libc::F_GETFL) };
    assert_ne!(flags, -1);
    assert_eq!(flags & libc::O_NONBLOCK, 0, "left non-blocking");
    drop(parent_end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mebibytes_each_way() {
    let (helper, _process) = start(&["stdio"], &ClientConfig::default()).await;
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let echoed = within("a 4 MiB echo", helper.echo(data.clone()))
        .await
        .expect("echo");
    assert!(echoed == data, "echo differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_child_fails_calls_in_flight_with_its_status() {
    let (helper, process) = start(&["stdio"], &ClientConfig::default()).await;
    assert_eq!(helper.add(1, 1).await.expect("add"), 2);
    let in_flight = tokio::spawn({
        let helper = helper.clone();
        async move { helper.sleep(60_000).await }
    });
    process.kill();
    let result = within("the call to fail", in_flight).await.expect("task");
    let status = match result {
        Err(RpcError::PeerExited(status)) => status,
        other => panic!("expected the exit status, got {other:?}"),
    };
    assert!(!status.success(), "{status}");
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // Later calls fail the same way, at once.
    assert!(matches!(
        helper.add(1, 1).await,
        Err(RpcError::PeerExited(later)) if later == status
    ));
    assert_eq!(
        within("the exit status", process.wait()).await,
        Some(status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_exiting_on_its_own_fails_calls_with_its_status() {
    let (helper, process) = start(&["exit-after", "300"], &ClientConfig::default()).await;
    let result = within("the call to fail", helper.sleep(60_000)).await;
    match result {
        Err(RpcError::PeerExited(status)) => assert_eq!(status.code(), Some(7)),
        other => panic!("expected the exit status, got {other:?}"),
    }
    let status = within("the exit status", process.wait()).await;
    assert_eq!(status.and_then(|s| s.code()), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_that_writes_garbage_fails_the_handshake_clearly() {
    let result = within(
        "the handshake to fail",
        spawn::<HelperClient>(child(&["garbage"]), &ClientConfig::default()),
    )
    .await;
    match result {
        Err(SpawnError::Handshake {
            source: RpcError::Protocol(ProtocolError::NotThisProtocol { received }),
            ..
        }) => assert!(received.contains("this"), "{received}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_program_is_a_spawn_error() {
    let result = spawn::<HelperClient>(
        Command::new("rpc-no-such-program-anywhere"),
        &ClientConfig::default(),
    )
    .await;
    assert!(
        matches!(result, Err(SpawnError::Spawn { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_lets_the_child_exit_cleanly() {
    // A grace period far beyond the test's patience: a kill would show as a timeout.
    let mut options = ClientConfig::new();
    options.child_exit_grace(Duration::from_secs(3600));
    let (helper, process) = start(&["stdio"], &options).await;
    assert_eq!(helper.add(2, 2).await.expect("add"), 4);
    let copy = helper.clone();
    drop(helper);
    assert!(process.try_status().is_none(), "a clone still holds it");
    drop(copy);
    let status = within("the child to exit", process.wait()).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// A child whose standard input and output are a socket (as some runtimes give their child
/// processes) serves over it, and exits once its client has said goodbye while the parent keeps
/// its end of the socket open: its reads do not sit in a blocking thread that only the
/// parent's close would end, and which the child's runtime would wait for as it exits.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_stdio_is_a_socket_exits_after_the_goodbye() {
    use std::os::fd::OwnedFd;

    use common::RawPeer;
    use rpc_core::protocol::{GoodbyeReason, Header};
    use rpc_core::Client;

    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let input = theirs.try_clone().expect("clone");
    let mut child = Command::new(child_program())
        .arg("stdio")
        .stdin(Stdio::from(OwnedFd::from(input)))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Kept open to the end: the child sees no end of its input.
    let held = ours.try_clone().expect("clone");
    ours.set_nonblocking(true).expect("nonblocking");
    let (read, write) = tokio::net::UnixStream::from_std(ours)
        .expect("register")
        .into_split();
    let mut peer = RawPeer::from_halves(Box::new(read), Box::new(write));
    peer.send_hello_for(<HelperClient as Client>::SERVICE).await;
    let welcome = within("the welcome", peer.recv()).await;
    assert!(
        matches!(welcome, Some((Header::Welcome { .. }, _))),
        "{welcome:?}"
    );
    peer.send_header(&Header::Goodbye {
        reason: GoodbyeReason::ShuttingDown,
    })
    .await;
    let status = within("the child to exit", child.wait())
        .await
        .expect("wait");
    assert!(status.success(), "{status:?}");
    drop((peer, held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_that_lingers_is_killed_after_the_grace_period() {
    let mut options = ClientConfig::new();
    options.child_exit_grace(Duration::from_millis(200));
    let (helper, process) = start(&["linger"], &options).await;
    assert_eq!(helper.add(2, 2).await.expect("add"), 4);
    drop(helper);
    let status = within("the child to be killed", process.wait())
        .await
        .expect("status");
    assert!(!status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_printf_in_the_child_goes_to_its_stderr_not_the_connection() {
    let (stderr_file, stderr) = capture();
    let mut command = child(&["stdio"]);
    command.stderr(stderr);
    let (helper, process): (HelperClient, _) = within(
        "the child to start",
        spawn(command, &ClientConfig::default()),
    )
    .await
    .expect("spawn");
    helper
        .c_print("a stray line from C".into())
        .await
        .expect("c_print");
    assert_eq!(helper.add(20, 22).await.expect("still connected"), 42);
    drop(helper);
    within("the child to exit", process.wait()).await;
    let logged = std::fs::read_to_string(stderr_file.path()).expect("read stderr");
    assert!(logged.contains("a stray line from C"), "{logged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn println_in_the_child_goes_to_its_stderr_not_the_connection() {
    let (stderr_file, stderr) = capture();
    let mut command = child(&["stdio"]);
    command.stderr(stderr);
    let (helper, process): (HelperClient, _) = within(
        "the child to start",
        spawn(command, &ClientConfig::default()),
    )
    .await
    .expect("spawn");
    helper
        .print("a stray line from a handler".into())
        .await
        .expect("print");
    assert_eq!(helper.add(20, 22).await.expect("still connected"), 42);
    drop(helper);
    within("the child to exit", process.wait()).await;
    let logged = std::fs::read_to_string(stderr_file.path()).expect("read stderr");
    assert!(logged.contains("a stray line from a handler"), "{logged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_pipes_leave_the_childs_stdio_alone() {
    let (stdout_file, stdout) = capture();
    let mut command = child(&["pipes"]);
    command
        .stdout(stdout)
        .env("RPC_TEST_MARK", "set by the parent");
    let (helper, process): (HelperClient, _) = within(
        "the child to start",
        spawn_with_pipes(command, &ClientConfig::default()),
    )
    .await
    .expect("spawn");
    assert_eq!(helper.add(5, 6).await.expect("add"), 11);
    let data = vec![7u8; 100_000];
    assert_eq!(helper.echo(data.clone()).await.expect("echo"), data);
    // The child's environment has lost the pipes' numbers (so its own children cannot inherit
    // them) and kept the rest.
    let env = |name: &str| helper.env(name.to_owned());
    assert_eq!(env(PIPES_ENV).await.expect("env"), None);
    assert_eq!(
        env("RPC_TEST_MARK").await.expect("env").as_deref(),
        Some("set by the parent")
    );
    drop(helper);
    let status = within("the child to exit", process.wait()).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let printed = std::fs::read_to_string(stdout_file.path()).expect("read stdout");
    assert_eq!(printed.trim(), "stdout is still mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_inherited_pipes_without_them_is_a_clear_error() {
    let service = child_service::HelperServer::new(child_service::HelperImpl);
    let result = serve_inherited_pipes(service, &rpc_core::ServerConfig::default()).await;
    assert!(
        matches!(result, Err(ChildServeError::NoPipes)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_cancellation_work_over_stdio() {
    let (helper, _process) = start(&["stdio"], &ClientConfig::default()).await;
    let hurried = helper.with_timeout(Some(Duration::from_millis(100)));
    let late = within("the deadline", hurried.sleep(60_000)).await;
    assert!(matches!(late, Err(RpcError::DeadlineExceeded)), "{late:?}");
    // The child dropped the handler whose deadline passed.
    until_sleeping(&helper, 0).await;
    // A call dropped by its caller once the child runs it is cancelled there too; the
    // connection goes on.
    let abandoned = tokio::spawn({
        let helper = helper.clone();
        async move { helper.sleep(60_000).await }
    });
    until_sleeping(&helper, 1).await;
    abandoned.abort();
    assert!(abandoned.await.is_err_and(|e| e.is_cancelled()));
    until_sleeping(&helper, 0).await;
    assert_eq!(helper.add(1, 2).await.expect("still connected"), 3);
}

/// Asks the child how many `sleep` handlers it holds until they are `count`.
async fn until_sleeping(helper: &HelperClient, count: u32) {
    within("the child's sleep handlers", async {
        while helper.sleeping().await.expect("sleeping") != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A stream from a child, over its stdio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_a_child_over_its_stdio() {
    let (helper, _process) = start(&["stdio"], &ClientConfig::default()).await;
    let mut numbers = helper.count(200).await.expect("open");
    let mut seen = Vec::new();
    while let Some(n) = within("the next number", numbers.next()).await {
        seen.push(n.expect("a number"));
    }
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
}

/// A stream to a child, over its stdio and over inherited pipes: more items than one window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_child_over_its_stdio_and_inherited_pipes() {
    let numbers = || futures_util::stream::iter(0..100_000u32);
    let expected: u64 = (0..100_000u64).sum();
    let (helper, _process) = start(&["stdio"], &ClientConfig::default()).await;
    let total = within("the total over stdio", helper.total(numbers())).await;
    assert_eq!(total.expect("total"), expected);
    let (helper, _process): (HelperClient, _) = within(
        "the child to start",
        spawn_with_pipes(child(&["pipes"]), &ClientConfig::default()),
    )
    .await
    .expect("spawn");
    let total = within("the total over pipes", helper.total(numbers())).await;
    assert_eq!(total.expect("total"), expected);
}

/// The parent's answers to its child's callbacks.
struct Answers;

impl child_service::Notes for Answers {
    async fn answer(&self, question: String) -> String {
        format!("parent says {question}")
    }
}

/// A child that calls its parent back, over its stdio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_calls_its_parent_back_over_its_stdio() {
    let mut config = ClientConfig::new();
    config.serve_callbacks(child_service::NotesServer::new(Answers));
    let (relay, _process) = within(
        "the child to start",
        rpc_transport::child::spawn::<child_service::RelayClient>(child(&["callbacks"]), &config),
    )
    .await
    .expect("spawn");
    let heard = within("the answer", relay.ask("hello".into())).await;
    assert_eq!(heard.expect("ask"), "child heard: parent says hello");
}
