//! The GUI against its daemon, under a display (Xvfb in CI): the window shows the daemon's
//! status; the daemon is killed and the window shows "reconnecting"; the daemon is started
//! again and the window is back, with the new daemon's status, without being restarted; a job
//! started as the button does runs on the new daemon. What the window shows is read from its
//! own report; a screenshot is taken at the end.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the test waits for the window to show something before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Kills a child process when dropped, so a failing test leaves none behind.
struct Killed(Child);

impl Killed {
    /// Stops the daemon as its owner would (its standard input closes), so that it removes its
    /// socket and lock file; returns whether it exited cleanly.
    fn stop(mut self) -> bool {
        drop(self.0.stdin.take());
        self.wait().success()
    }

    /// Waits for the process to exit; fails the test after [`PATIENCE`].
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the file it holds when dropped (the screenshot the test took for itself), whether
/// the test passed or not.
struct RemovedAtEnd(Option<std::path::PathBuf>);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn daemon(name: &str) -> (Killed, u32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_session_daemon"))
        .args(["serve", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stdout = child.stdout.take().expect("stdout");
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PATIENCE).expect("the daemon to be ready");
    assert_eq!(line.trim(), "ready");
    let pid = child.0.id();
    (child, pid)
}

/// The window's report lines, as they come.
struct Window {
    child: Killed,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Window {
    fn start(name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_session_gui"))
            .args(["--report", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the window");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Killed(child),
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line that contains every one of `parts`.
    fn until(&mut self, parts: &[&str]) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|part| line.contains(part)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the window never showed {parts:?}; it showed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("command");
        self.stdin.flush().expect("flush");
    }
}

#[test]
fn the_window_comes_back_when_the_daemon_restarts() {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "no display: run under Xvfb (xvfb-run -a cargo test --manifest-path gui/Cargo.toml)"
    );
    let name = format!("session-gui-test-{}", std::process::id());
    let (first, pid) = daemon(&name);
    let mut window = Window::start(&name);
    window.until(&["connection connected 1", &format!("status pid {pid} ")]);

    drop(first);
    window.until(&["connection reconnecting"]);
    let (second, pid) = daemon(&name);
    window.until(&[
        "connection connected 2",
        &format!("status pid {pid} "),
        "gaps 1",
    ]);

    // What the "Run a job" button does: the new daemon runs it, and the watch shows it.
    window.send("run-job");
    window.until(&["jobs 1 ", "last action job done (1 so far)"]);

    let asked = std::env::var_os("SCREENSHOT_TO").map(std::path::PathBuf::from);
    let path = asked
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("{name}.png")));
    let _removed = RemovedAtEnd(asked.is_none().then(|| path.clone()));
    window.send(&format!("screenshot {}", path.display()));
    window.until(&["screenshot saved"]);
    let png = std::fs::read(&path).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    window.send("quit");
    let status = window.child.wait();
    assert!(status.success(), "{status}");
    assert!(second.stop(), "the daemon stops cleanly");
}
