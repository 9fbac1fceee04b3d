//! The examples are real programs: run them as a user would.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long an example gets for each step before the test fails (and kills it).
const PATIENCE: Duration = Duration::from_secs(60);

/// An example's process, killed when dropped: a test that fails leaves none behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the process to exit; fails the test after [`PATIENCE`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the example did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the process's stdin: the examples' servers stop gracefully then.
    fn close_stdin(&mut self) {
        drop(self.0.stdin.take());
    }
}

/// Runs `command` to its end and collects its output; fails the test (killing it) after
/// [`PATIENCE`].
fn output(command: &mut Command) -> Output {
    let mut child = Running(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run example"),
    );
    // Read on threads of their own, so that the example never waits on a full pipe; their
    // ends are waited for within the patience too (a process the example left behind could
    // hold them open).
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            let _ = tx.send(bytes);
        });
        rx
    };
    let stdout = read_all(child.0.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(child.0.stderr.take().map(|p| Box::new(p) as _));
    let status = child.wait();
    let ended = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(PATIENCE).expect("the output's end");
    Output {
        status,
        stdout: ended(stdout),
        stderr: ended(stderr),
    }
}

/// The first line of `pipe` and the rest of it; fails the test after [`PATIENCE`].
fn first_line<R: Read + Send + 'static>(pipe: R) -> (String, BufReader<R>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let _ = tx.send((read.map(|_| line), reader));
    });
    let (line, rest) = rx.recv_timeout(PATIENCE).expect("a line in time");
    (line.expect("read"), rest)
}

/// The example binaries cargo builds next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = output(Command::new(example("calculator")).args(args));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `calculator serve --name NAME [extra]` and waits for it to say it is ready.
fn start_server(name: &str, extra: &[&str]) -> Running {
    let mut server = Running(
        Command::new(example("calculator"))
            .args(["serve", "--name", name])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server"),
    );
    let (line, _) = first_line(server.0.stdout.take().expect("stdout"));
    assert_eq!(line.trim(), "ready");
    server
}

#[test]
fn calculator_demo_runs_server_and_client() {
    let (ok, stdout, stderr) = run(&[]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "add(2, 3)           = 5",
        "divide(7.0, 2.0)    = Ok(3.5)",
        "divide(1.0, 0.0)    = Err(DivisionByZero)",
        "server has logged [\"hello from the client\"]",
        "total = 999000 (expected 999000)",
        "server exited cleanly",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn calculator_serve_and_call_by_hand() {
    let name = format!("calc-example-test-{}", std::process::id());
    let mut server = start_server(&name, &["--until-stdin-closes"]);

    let (ok, stdout, stderr) = run(&["call", "--name", &name, "add", "2", "3"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "5");
    let (ok, stdout, _) = run(&["call", "--name", &name, "divide", "1", "0"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "error: division by zero");
    let (ok, stdout, _) = run(&["call", "--name", &name, "log", "hi", "there"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "logged; server has 1 lines");

    server.close_stdin();
    let status = server.wait();
    assert!(status.success(), "{status}");
    let (ok, _, stderr) = run(&["call", "--name", &name, "add", "2", "3"]);
    assert!(!ok);
    assert!(stderr.contains("no server is listening"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn calculator_server_stops_gracefully_on_ctrl_c() {
    let name = format!("calc-example-sigint-{}", std::process::id());
    let mut server = start_server(&name, &[]);
    let (ok, stdout, _) = run(&["call", "--name", &name, "add", "20", "22"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "42");
    let pid = i32::try_from(server.0.id()).expect("pid");
    // SAFETY: sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = server.wait();
    assert!(status.success(), "{status}");
}

#[test]
fn child_process_example_calls_and_survives_a_killed_child() {
    let output = output(&mut Command::new(example("child_process")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "example failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "add(2, 3)           = 5",
        "shout(\"hello\")      = \"HELLO\"",
        "1000 concurrent adds: total 999000",
        "client dropped: child exited cleanly",
        "slow call failed: peer process exited",
        "add after the kill failed: peer process exited",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // The child's stray println! went to its stderr (shared with the parent), not the pipe.
    assert!(
        stderr.contains("child: asked to shout \"hello\""),
        "stderr:\n{stderr}"
    );
}

/// At the descriptor limit, accepting fails again and again while clients wait: the server
/// retries, but logs it at a bounded rate, not every 20 ms.
#[cfg(target_os = "linux")]
#[test]
fn repeated_accept_errors_are_logged_at_a_bounded_rate() {
    use std::os::unix::net::UnixStream;

    let name = format!("calc-emfile-{}", std::process::id());
    // Few descriptors: a few connections use them up.
    let mut server = Running(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 40 && exec \"$0\" serve --name \"$1\" --until-stdin-closes")
            .arg(example("calculator"))
            .arg(&name)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server"),
    );
    let (line, _) = first_line(server.0.stdout.take().expect("stdout"));
    assert_eq!(line.trim(), "ready");
    let (serving, mut stderr) = first_line(server.0.stderr.take().expect("stderr"));
    let path = serving
        .trim()
        .rsplit_once(" at ")
        .map(|(_, path)| path.to_owned())
        .expect("the server says where it serves");

    // More clients than descriptors; they wait in the listen queue, and accept fails.
    let clients: Vec<UnixStream> = (0..80)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    // What is measured is a rate: watch two seconds of the server retrying (at 20 ms a
    // retry, about 100 attempts).
    std::thread::sleep(Duration::from_secs(2));
    drop(clients);
    server.close_stdin();
    let status = server.wait();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read");
    let logged = rest.matches("accept failed").count();
    assert!(status.success(), "{rest}");
    assert!(
        (1..=2).contains(&logged),
        "{logged} accept errors logged:\n{rest}"
    );
}

#[test]
fn status_daemon_is_watched_live() {
    let output = output(&mut Command::new(example("status_daemon")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // A watch delivers the latest status: changes that follow each other closely may be seen
    // as one, so not every job is seen running, but the watcher sees the work while it runs.
    assert!(
        stdout.contains(", running "),
        "no job seen running in:\n{stdout}"
    );
    for expected in [
        "uploaded report.bin: 1048576 bytes",
        "queued 0, done 3, idle, stored 1048576",
        "final status: Status { queued: 0, done: 3, running: None, stored: 1048576 }",
        "daemon exited cleanly",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

/// The installer asks its front end and reports progress into it: callbacks.
#[test]
fn installer_asks_its_front_end() {
    let output = output(&mut Command::new(example("installer")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let expected = "install editor? yes\neditor: 1/4\neditor: 2/4\neditor: 3/4\neditor: 4/4\n\
                    installed editor: 4 files\ninstall toolbar? no\n\
                    not installed toolbar: Declined\ndaemon exited cleanly\n";
    assert_eq!(stdout, expected);
}
