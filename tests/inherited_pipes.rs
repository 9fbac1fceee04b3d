//! `serve_inherited_pipes` takes only pipes, takes them at most once a process, closes nothing
//! it did not take, and removes `RPC_CHILD_PIPES` from the environment.
//!
//! The test process plays the child: it makes the pipes itself and names them in the
//! variable. The environment and the flag are one per process, so the cases run in sequence in
//! the one test of this binary.
#![cfg(unix)]

#[path = "support/child_service.rs"]
mod child_service;

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use child_service::{HelperClient, HelperImpl, HelperServer};
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::child::{serve_inherited_pipes, BadPipesReason, ChildServeError, PIPES_ENV};
use rpc_transport::pipes::connect_pipes;
use tokio::net::unix::pipe;

/// How long a step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A descriptor the test holds by number, so that it can check whether it is still open.
/// Closed on drop (errors ignored: the point of the test is that it may have been closed).
struct Held(RawFd);

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: close only ends this number's use; the test owns it.
        unsafe { libc::close(self.0) };
    }
}

impl Held {
    fn is_open(&self) -> bool {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        unsafe { libc::fcntl(self.0, libc::F_GETFD) != -1 }
    }

    fn write(&self, data: &[u8]) -> isize {
        // SAFETY: the pointer and length describe `data`.
        unsafe { libc::write(self.0, data.as_ptr().cast(), data.len()) }
    }

    fn read(&self, buf: &mut [u8]) -> isize {
        // SAFETY: the pointer and length describe `buf`.
        unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) }
    }
}

/// A regular file of the test's, open for writing.
struct PlainFile {
    fd: Held,
    path: tempfile::TempPath,
}

impl PlainFile {
    fn new() -> Self {
        let (file, path) = tempfile::NamedTempFile::new()
            .expect("temp file")
            .into_parts();
        Self {
            fd: Held(file.into_raw_fd()),
            path,
        }
    }

    /// Asserts that the file is still open under its number and that writing through it
    /// still lands in it.
    #[track_caller]
    fn assert_still_mine(&self, case: &str) {
        assert!(
            self.fd.is_open(),
            "{case}: file descriptor {} closed",
            self.fd.0
        );
        let line = format!("{case}\n");
        let written = self.fd.write(line.as_bytes());
        assert_eq!(written, line.len() as isize, "{case}: write failed");
        let content = std::fs::read_to_string(&self.path).expect("read the file back");
        assert!(content.ends_with(&line), "{case}: {content:?}");
    }
}

/// Whether `fd` is open and closed on exec.
fn close_on_exec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags != -1 && flags & libc::FD_CLOEXEC != 0
}

/// A pipe of the test's: (read end, write end).
fn pipe_pair() -> (Held, Held) {
    let (read, write) = std::io::pipe().expect("pipe");
    (Held(read.into_raw_fd()), Held(write.into_raw_fd()))
}

/// Asserts that both ends are open and still carry data from one to the other.
#[track_caller]
fn assert_pipe_works(read: &Held, write: &Held, case: &str) {
    assert!(
        read.is_open() && write.is_open(),
        "{case}: a pipe end closed"
    );
    assert_eq!(write.write(b"ping"), 4, "{case}: write to the pipe failed");
    let mut buf = [0; 4];
    assert_eq!(read.read(&mut buf), 4, "{case}: read from the pipe failed");
    assert_eq!(&buf, b"ping", "{case}");
}

/// Calls `serve_inherited_pipes` with the variable set to `value` (or unset), expecting it to
/// fail at once, and checks that the variable is gone afterwards.
async fn serve_failing(value: Option<&str>, case: &str) -> ChildServeError {
    match value {
        Some(value) => std::env::set_var(PIPES_ENV, value),
        None => std::env::remove_var(PIPES_ENV),
    }
    let config = ServerConfig::default();
    let serving = serve_inherited_pipes(HelperServer::new(HelperImpl), &config);
    let result = tokio::time::timeout(PATIENCE, serving)
        .await
        .unwrap_or_else(|_| panic!("{case}: still serving; expected an error"));
    assert_eq!(
        std::env::var_os(PIPES_ENV),
        None,
        "{case}: {PIPES_ENV} still set"
    );
    match result {
        Err(error) => error,
        Ok(()) => panic!("{case}: served; expected an error"),
    }
}

#[track_caller]
fn assert_bad(error: &ChildServeError, want: BadPipesReason, case: &str) {
    assert!(
        matches!(error, ChildServeError::BadPipes { reason, .. } if *reason == want),
        "{case}: expected {want:?}, got {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_pipes_are_checked_taken_once_and_forgotten() {
    // No variable.
    let error = serve_failing(None, "no variable").await;
    assert!(matches!(error, ChildServeError::NoPipes), "{error:?}");

    // Not numbers.
    let error = serve_failing(Some("stdin,stdout"), "not numbers").await;
    assert_bad(&error, BadPipesReason::Malformed, "not numbers");

    // Two regular files of the process's own: refused, and both still open and in use.
    let (a, b) = (PlainFile::new(), PlainFile::new());
    let value = format!("{},{}", a.fd.0, b.fd.0);
    let error = serve_failing(Some(&value), "two files").await;
    assert_bad(&error, BadPipesReason::NotAPipe, "two files");
    a.assert_still_mine("two files");
    b.assert_still_mine("two files");

    // A good read end and a file: neither is taken.
    let (read, write) = pipe_pair();
    let value = format!("{},{}", read.0, a.fd.0);
    let error = serve_failing(Some(&value), "a pipe and a file").await;
    assert_bad(&error, BadPipesReason::NotAPipe, "a pipe and a file");
    assert_pipe_works(&read, &write, "a pipe and a file");
    a.assert_still_mine("a pipe and a file");

    // The ends the wrong way round.
    let value = format!("{},{}", write.0, read.0);
    let error = serve_failing(Some(&value), "ends swapped").await;
    assert_bad(&error, BadPipesReason::WrongDirection, "ends swapped");
    assert_pipe_works(&read, &write, "ends swapped");

    // A standard stream, and a number that is not open.
    let value = format!("0,{}", write.0);
    let error = serve_failing(Some(&value), "stdin").await;
    assert_bad(&error, BadPipesReason::Standard, "stdin");
    let value = format!("{},{}", read.0, i32::MAX);
    let error = serve_failing(Some(&value), "not open").await;
    assert_bad(&error, BadPipesReason::NotOpen, "not open");
    assert_pipe_works(&read, &write, "standard and not open");
    drop((read, write));

    // Real pipes, as spawn_with_pipes passes them: served, and the variable is gone.
    let (child_read, parent_write) = std::io::pipe().expect("pipe");
    let (parent_read, child_write) = std::io::pipe().expect("pipe");
    let (child_read, child_write) = (child_read.into_raw_fd(), child_write.into_raw_fd());
    std::env::set_var(PIPES_ENV, format!("{child_read},{child_write}"));
    // The service runs beside the parent's side on this task; the handshake completes only
    // once it has taken the pipes.
    let config = ServerConfig::default();
    let server = serve_inherited_pipes(HelperServer::new(HelperImpl), &config);
    let parent = async {
        let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(parent_read)).expect("reader");
        let writer = pipe::Sender::from_owned_fd(OwnedFd::from(parent_write)).expect("writer");
        let config = ClientConfig::default();
        let connecting = connect_pipes::<HelperClient, _, _>(reader, writer, &config);
        let helper = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("handshake in time")
            .expect("connect to the served pipes");
        assert_eq!(helper.add(2, 3).await.expect("add"), 5);
        assert_eq!(std::env::var_os(PIPES_ENV), None, "{PIPES_ENV} still set");
        // Taken pipes are close-on-exec: a process this one starts inherits neither.
        for fd in [child_read, child_write] {
            assert!(
                close_on_exec(fd),
                "descriptor {fd} is inherited by children"
            );
        }

        // A second call, naming the same pipes: refused, and the connection goes on.
        let value = format!("{child_read},{child_write}");
        let error = serve_failing(Some(&value), "second call, same pipes").await;
        assert!(
            matches!(error, ChildServeError::PipesTaken),
            "second call: {error:?}"
        );
        assert_eq!(helper.add(3, 4).await.expect("add after"), 7);

        // A third, naming files: refused without touching them.
        let value = format!("{},{}", a.fd.0, b.fd.0);
        let error = serve_failing(Some(&value), "third call, files").await;
        assert!(
            matches!(error, ChildServeError::PipesTaken),
            "third call: {error:?}"
        );
        a.assert_still_mine("third call");
        b.assert_still_mine("third call");
        // Dropping the client ends the service.
    };
    let (served, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(server, parent) })
        .await
        .expect("the service ends in time once the client is gone");
    assert!(served.is_ok(), "{served:?}");
}
