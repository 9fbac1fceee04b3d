//! A service in a child process, over the child's stdin/stdout or over two inherited pipes.
//!
//! **Parent**: [`spawn`] starts a program with its stdin and stdout piped to a typed client
//! (its stderr stays the parent's, for logs); [`spawn_with_pipes`] leaves the child's stdio
//! alone and passes it two anonymous pipes instead. Both supervise the child:
//!
//! * when the child exits, calls in flight fail at once with [`RpcError::PeerExited`], which
//!   carries the exit status;
//! * when the last clone of the client is dropped, the child's input pipe is closed, the child
//!   is expected to exit, and it is killed if it has not within [`ClientConfig::child_exit_grace`];
//! * a program that does not speak the protocol fails [`spawn`] with
//!   [`SpawnError::Handshake`], showing what it wrote instead, and is killed.
//!
//! **Child**: [`serve_stdio`] (or [`serve_inherited_pipes`]) serves a service to the parent and
//! returns when the parent goes away.
//!
//! # Keeping stdout clean
//!
//! Over stdio, the child's stdout *is* the connection: one stray `println!` would break it.
//! [`serve_stdio`] therefore takes the real stdout for itself and points the process's standard
//! output at its standard error (and standard input at the null device). From then on
//! `println!`, a logger that writes to stdout, or a C library's `printf` all land in the
//! parent's stderr, as logs, and cannot reach the connection. Anything printed *before*
//! [`serve_stdio`] runs is still a problem: the parent's [`spawn`] then fails with
//! [`rpc_core::ProtocolError::NotThisProtocol`], quoting the bytes it got. Call
//! [`serve_stdio`] first thing in `main`, before any output.
//!
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct Calc;
//! # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # async fn parent() -> Result<(), Box<dyn std::error::Error>> {
//! // Parent:
//! let mut command = tokio::process::Command::new("my-helper");
//! command.arg("--serve");
//! let (calc, child): (CalculatorClient, _) =
//!     rpc_transport::child::spawn(command, &Default::default()).await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! drop(calc); // closes the child's stdin; the child exits (or is killed after the grace period)
//! let status = child.wait().await;
//! # Ok(()) }
//! # async fn child() -> Result<(), rpc_transport::child::ChildServeError> {
//! // Child (`my-helper --serve`):
//! rpc_transport::child::serve_stdio(CalculatorServer::new(Calc)).await?;
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead, FrameReader, FrameWrite, FrameWriter};
use rpc_core::{Client, ClientConfig, ConnectionError, Dispatch};
use rpc_core::{RpcError, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use crate::pipes::serve_pipes_as;
use crate::sys::child as os;

/// The environment variable that tells a child started by [`spawn_with_pipes`] where its two
/// pipes are: `<read>,<write>` (file descriptors on Unix, handle values on Windows).
/// [`serve_inherited_pipes`] removes it from the environment, so the child's own children do
/// not inherit it.
pub const PIPES_ENV: &str = "RPC_CHILD_PIPES";

/// Set once [`serve_inherited_pipes`] has taken the pipes: it takes them at most once a process.
static PIPES_TAKEN: AtomicBool = AtomicBool::new(false);

/// How long the reader waits, once the child's output has ended, for the child's exit status.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long the reader keeps reading what the child wrote before it exited.
const DRAIN: Duration = Duration::from_millis(200);

/// Why a child service could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The program could not be started (not found, not executable...), or its pipes could not
    /// be set up.
    #[error("could not start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The program started but did not complete the handshake; it has been killed. The cause
    /// says why: [`RpcError::PeerExited`] if it exited first (with its status),
    /// [`rpc_core::ProtocolError::NotThisProtocol`] if it wrote something else (quoted),
    /// [`RpcError::Rejected`] if it serves another service, [`RpcError::HandshakeTimeout`] if
    /// it said nothing.
    #[error("{program} did not complete the handshake")]
    Handshake {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: RpcError,
    },
}

/// Why serving the parent from a child process failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChildServeError {
    /// The process's stdin and stdout (or the inherited pipes) could not be set up for the
    /// connection.
    #[error("could not set up stdin and stdout (or the inherited pipes) for the connection")]
    Stdio(#[source] io::Error),
    /// [`PIPES_ENV`] is not set: the process was not started by [`spawn_with_pipes`].
    #[error("{PIPES_ENV} is not set: not started by spawn_with_pipes")]
    NoPipes,
    /// [`PIPES_ENV`] does not name two open pipes. Neither was taken, and nothing was closed.
    #[error("{PIPES_ENV}={value:?} does not name two inherited pipes: {reason}")]
    BadPipes {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: BadPipesReason,
    },
    /// The inherited pipes were already taken by an earlier call of [`serve_inherited_pipes`]
    /// in this process. Nothing was taken or closed.
    #[error("the inherited pipes were already taken by this process")]
    PipesTaken,
    /// The connection to the parent ended abnormally.
    #[error("connection to the parent failed")]
    Connection(#[source] ConnectionError),
}

/// What is wrong with the value of [`PIPES_ENV`] (in [`ChildServeError::BadPipes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadPipesReason {
    /// Not `<read>,<write>` with two different decimal numbers.
    #[error("expected <read>,<write>: two different numbers")]
    Malformed,
    /// A number names a standard stream (descriptors 0 to 2 on Unix, the standard handles on
    /// Windows).
    #[error("names a standard stream")]
    Standard,
    /// A number names no open descriptor or handle.
    #[error("names nothing open")]
    NotOpen,
    /// A number names something open that is not a pipe (a file, a socket, a terminal...).
    #[error("names something that is not a pipe")]
    NotAPipe,
    /// The first pipe is not open for reading, or the second not for writing (checked on Unix).
    #[error("a pipe is open in the wrong direction")]
    WrongDirection,
}

/// Which end of a pipe the child holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Read,
    Write,
}

/// What the supervisor knows about the child.
#[derive(Debug, Clone, Copy)]
enum ChildState {
    Running,
    Exited(ExitStatus),
    /// The exit status could not be read.
    Unknown,
}

/// A supervised child process serving a client (from [`spawn`] or [`spawn_with_pipes`]).
///
/// Dropping it does not stop the child: the client's lifetime does. Use [`ChildProcess::kill`]
/// to stop it at once.
#[derive(Debug, Clone)]
pub struct ChildProcess {
    pid: Option<u32>,
    state: watch::Receiver<ChildState>,
    kill: Arc<Notify>,
}

impl ChildProcess {
    /// The child's process id, if it had not already exited when it was spawned.
    pub fn id(&self) -> Option<u32> {
        self.pid
    }

    /// The child's exit status, if it has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        match *self.state.borrow() {
            ChildState::Exited(status) => Some(status),
            ChildState::Running | ChildState::Unknown => None,
        }
    }

    /// Waits for the child to exit and returns its status; `None` if the status could not be
    /// read from the operating system.
    pub async fn wait(&self) -> Option<ExitStatus> {
        exit_status(&mut self.state.clone()).await
    }

    /// Kills the child now. Calls in flight fail with [`RpcError::PeerExited`].
    pub fn kill(&self) {
        self.kill.notify_one();
    }

    /// Starts supervising `child`: the returned sender is fired (or dropped) when the child's
    /// input is closed, which starts the grace period.
    fn supervise(child: Child, grace: Duration) -> (Self, oneshot::Sender<()>) {
        let (closed_tx, closed_rx) = oneshot::channel();
        let (state_tx, state) = watch::channel(ChildState::Running);
        let kill = Arc::new(Notify::new());
        let process = Self {
            pid: child.id(),
            state,
            kill: Arc::clone(&kill),
        };
        tokio::spawn(supervise(child, grace, closed_rx, kill, state_tx));
        (process, closed_tx)
    }
}

async fn supervise(
    mut child: Child,
    grace: Duration,
    mut input_closed: oneshot::Receiver<()>,
    kill: Arc<Notify>,
    state: watch::Sender<ChildState>,
) {
    let pid = child.id();
    let mut closed = false;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = kill.notified() => {
                tracing::debug!(?pid, "killing child");
                let _ = child.start_kill();
            }
            _ = &mut input_closed, if !closed => {
                closed = true;
                kill_at = Some(Instant::now() + grace);
            }
            () = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                tracing::warn!(?pid, ?grace, "child did not exit after its input closed; killing it");
                kill_at = None;
                let _ = child.start_kill();
            }
        }
    };
    let new_state = match status {
        Ok(status) => {
            tracing::debug!(?pid, %status, "child exited");
            ChildState::Exited(status)
        }
        Err(error) => {
            tracing::warn!(?pid, %error, "could not read the child's exit status");
            ChildState::Unknown
        }
    };
    state.send_replace(new_state);
}

/// Waits until the child is no longer running; its status if known.
async fn exit_status(state: &mut watch::Receiver<ChildState>) -> Option<ExitStatus> {
    match state
        .wait_for(|s| !matches!(s, ChildState::Running))
        .await
        .map(|s| *s)
    {
        Ok(ChildState::Exited(status)) => Some(status),
        _ => None,
    }
}

/// Reads the child's frames; once the child has exited, ends with its exit status.
struct ChildReader<R> {
    inner: FrameReader<R>,
    state: watch::Receiver<ChildState>,
    exited: Option<ExitStatus>,
    /// Set when the exit status is unknown: read on without watching it.
    blind: bool,
}

impl<R: AsyncRead + Unpin + Send + 'static> ChildReader<R> {
    async fn after_end(
        &mut self,
        ended: Result<Option<Bytes>, FrameError>,
    ) -> Result<Option<Bytes>, FrameError> {
        // The output ended or broke: the child is exiting; report how.
        match tokio::time::timeout(EXIT_WAIT, exit_status(&mut self.state)).await {
            Ok(Some(status)) => {
                self.exited = Some(status);
                Err(FrameError::PeerExited(status))
            }
            _ => ended,
        }
    }

    async fn drain(
        &mut self,
        status: ExitStatus,
        max_frame: u32,
    ) -> Result<Option<Bytes>, FrameError> {
        // Frames the child wrote before it exited are still delivered.
        match tokio::time::timeout(DRAIN, self.inner.read_frame(max_frame)).await {
            Ok(Ok(Some(frame))) => Ok(Some(frame)),
            _ => Err(FrameError::PeerExited(status)),
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for ChildReader<R> {
    fn holds_nothing(&self) -> bool {
        self.inner.holds_nothing()
    }

    fn refused_frame_start(&self) -> &[u8] {
        self.inner.refused_frame_start()
    }

    fn consume_buffered(
        &mut self,
        max_frame: u32,
        take: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, FrameError> {
        // Frames already read are delivered, before and after the child exits.
        self.inner.consume_buffered(max_frame, take)
    }

    async fn read_frame(&mut self, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        if let Some(status) = self.exited {
            return self.drain(status, max_frame).await;
        }
        if self.blind {
            return self.inner.read_frame(max_frame).await;
        }
        let exited = tokio::select! {
            biased;
            result = self.inner.read_frame(max_frame) => {
                return match result {
                    Ok(Some(frame)) => Ok(Some(frame)),
                    ended => self.after_end(ended).await,
                };
            }
            status = exit_status(&mut self.state) => status,
        };
        match exited {
            Some(status) => {
                self.exited = Some(status);
                self.drain(status, max_frame).await
            }
            None => {
                self.blind = true;
                self.inner.read_frame(max_frame).await
            }
        }
    }
}

/// Writes to the child; when dropped (the client is gone), starts the child's grace period.
struct ChildWriter<W> {
    inner: FrameWriter<W>,
    state: watch::Receiver<ChildState>,
    closed: Option<oneshot::Sender<()>>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for ChildWriter<W> {
    async fn write_frames(&mut self, frames: &[Bytes]) -> Result<(), FrameError> {
        match self.inner.write_frames(frames).await {
            Ok(()) => Ok(()),
            // A broken pipe to a child that is exiting: report the exit, with its status, as
            // the reading side does.
            Err(error) => match tokio::time::timeout(EXIT_WAIT, exit_status(&mut self.state)).await
            {
                Ok(Some(status)) => Err(FrameError::PeerExited(status)),
                _ => Err(error),
            },
        }
    }

    fn accepts_parts(&self) -> bool {
        self.inner.accepts_parts()
    }

    async fn close(&mut self) -> Result<(), FrameError> {
        self.inner.close().await
    }
}

impl<W> Drop for ChildWriter<W> {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

fn program_name(command: &Command) -> String {
    command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned()
}

/// Starts `command` with its stdin and stdout piped to a client of `C`'s service, and performs
/// the handshake. The child's stderr is whatever `command` says (inherited by default). The
/// child must serve with [`serve_stdio`].
///
/// # Errors
///
/// [`SpawnError::Spawn`] if the program cannot be started; [`SpawnError::Handshake`] if it
/// does not complete the handshake (it is killed).
pub async fn spawn<C: Client>(
    command: impl Into<Command>,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError> {
    let mut command = command.into();
    let program = program_name(&command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let spawn_error = |source| SpawnError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let pipes = child.stdout.take().zip(child.stdin.take());
    let Some((stdout, stdin)) = pipes else {
        return Err(spawn_error(io::Error::other("child has no stdio pipes")));
    };
    connect_child(child, stdout, stdin, program, config).await
}

/// Starts `command` and connects a client of `C`'s service over two anonymous pipes that the
/// child inherits, leaving the child's stdin, stdout and stderr as `command` says. The child
/// finds the pipes in the [`PIPES_ENV`] environment variable and must serve with
/// [`serve_inherited_pipes`].
///
/// On Windows, the child's ends of the pipes are inheritable until the child has started: a
/// process spawned by another thread in that moment inherits them too.
///
/// # Errors
///
/// As [`spawn`].
pub async fn spawn_with_pipes<C: Client>(
    command: impl Into<Command>,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError> {
    let mut command = command.into();
    let program = program_name(&command);
    let spawn_error = |source| SpawnError::Spawn {
        program: program.clone(),
        source,
    };
    let (parent, child_ends) = os::pipe_pairs().map_err(spawn_error)?;
    os::pass_to(&child_ends, &mut command).map_err(spawn_error)?;
    command.kill_on_drop(true);
    let child = command.spawn().map_err(spawn_error)?;
    // The child has its copies now; ours must close, or the pipes never report end-of-file.
    drop(child_ends);
    let (reader, writer) = parent;
    connect_child(child, reader, writer, program, config).await
}

async fn connect_child<C, R, W>(
    child: Child,
    reader: R,
    writer: W,
    program: String,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError>
where
    C: Client,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (process, closed) = ChildProcess::supervise(child, config.get_child_exit_grace());
    let reader = ChildReader {
        inner: FrameReader::new(reader),
        state: process.state.clone(),
        exited: None,
        blind: false,
    };
    let writer = ChildWriter {
        inner: FrameWriter::new(writer),
        state: process.state.clone(),
        closed: Some(closed),
    };
    match rpc_core::connect(reader, writer, config).await {
        Ok(client) => Ok((client, process)),
        Err(source) => {
            process.kill();
            Err(SpawnError::Handshake { program, source })
        }
    }
}

/// Serves `service` to the parent over this process's stdin and stdout, until the parent
/// closes the connection, with the default [`ServerConfig`]. See [`serve_stdio_with`].
///
/// # Errors
///
/// As [`serve_stdio_with`].
pub async fn serve_stdio<D: Dispatch>(service: D) -> Result<(), ChildServeError> {
    serve_stdio_with(service, &ServerConfig::default()).await
}

/// Serves `service` to the parent over this process's stdin and stdout, until the parent
/// closes the connection (returns `Ok`, and the process should then exit).
///
/// First it takes stdin and stdout for the connection and points the process's standard
/// output at standard error and its standard input at the null device, so nothing else in the
/// process can write into the connection or read from it (see the [module](self) docs).
/// The handlers' [`rpc_core::CallContext`] names the parent process as the peer.
///
/// # Errors
///
/// [`ChildServeError::Stdio`] if stdin or stdout cannot be taken over (closed, or not
/// readable/writable); [`ChildServeError::Connection`] if the connection ends abnormally.
pub async fn serve_stdio_with<D: Dispatch>(
    service: D,
    config: &ServerConfig,
) -> Result<(), ChildServeError> {
    let (reader, writer) = os::take_stdio().map_err(ChildServeError::Stdio)?;
    serve_pipes_as(reader, writer, os::parent(), service, config)
        .await
        .map_err(ChildServeError::Connection)
}

/// Serves `service` to the parent over the two pipes passed by [`spawn_with_pipes`], until the
/// parent closes the connection. Stdin, stdout and stderr stay free for other uses.
///
/// The pipes are the descriptors (handles on Windows) that [`PIPES_ENV`] names. Before taking
/// them, this checks that both are open pipes, open in the right direction, and not standard
/// streams; if either is not, neither is taken and nothing is closed. The pipes are taken at
/// most once a process: a second call fails with [`ChildServeError::PipesTaken`].
///
/// # Environment
///
/// [`PIPES_ENV`] is removed from the environment by every call, before the handshake, so
/// processes this one starts do not inherit numbers that mean nothing (or another file) to
/// them. Call this before starting threads that read the environment other than through
/// `std::env` (a C library's `getenv`): std serialises its own access, not theirs.
///
/// The process must not use the numbers in [`PIPES_ENV`] for descriptors of its own: this
/// takes ownership of what they name once it has checked that they are pipes.
///
/// # Errors
///
/// [`ChildServeError::NoPipes`] or [`ChildServeError::BadPipes`] if the process was not
/// started by [`spawn_with_pipes`]; [`ChildServeError::PipesTaken`] if an earlier call took the
/// pipes; [`ChildServeError::Stdio`] if the pipes cannot be set up for asynchronous use;
/// [`ChildServeError::Connection`] if the connection ends abnormally.
pub async fn serve_inherited_pipes<D: Dispatch>(
    service: D,
    config: &ServerConfig,
) -> Result<(), ChildServeError> {
    let (reader, writer) = take_inherited_pipes()?;
    serve_pipes_as(reader, writer, os::parent(), service, config)
        .await
        .map_err(ChildServeError::Connection)
}

pub(crate) type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Removes [`PIPES_ENV`] from the environment and takes the pipes it names, if they are pipes
/// and no earlier call took them.
fn take_inherited_pipes() -> Result<(BoxReader, BoxWriter), ChildServeError> {
    let value = std::env::var_os(PIPES_ENV);
    // Removing a variable frees its text. std's environment functions hold a lock, so no
    // `std::env` reader sees it half-removed; a thread reading the environment outside std at
    // this moment could, which is why `serve_inherited_pipes` documents that it must be called
    // before any such thread runs. (The function is marked unsafe from edition 2024 for this
    // reason; this crate is edition 2021.)
    std::env::remove_var(PIPES_ENV);
    if PIPES_TAKEN.load(Ordering::Acquire) {
        return Err(ChildServeError::PipesTaken);
    }
    let value = value.ok_or(ChildServeError::NoPipes)?;
    let bad = |reason| ChildServeError::BadPipes {
        value: value.to_string_lossy().into_owned(),
        reason,
    };
    let (read, write) = parse_pipes(&value).map_err(bad)?;
    // Both are checked before either is taken, so a bad value closes nothing.
    let read = os::check(read, End::Read).map_err(bad)?;
    let write = os::check(write, End::Write).map_err(bad)?;
    if PIPES_TAKEN.swap(true, Ordering::AcqRel) {
        return Err(ChildServeError::PipesTaken);
    }
    // SAFETY: both are open pipes (just checked). Nothing else in the process owns them: the
    // parent passed them for this function to own, as `PIPES_ENV` says; the flag makes this
    // the only time they are taken in the process; and the variable is gone, so nothing else
    // learns their numbers from it. That the process does not use these numbers for
    // descriptors of its own is the caller's part, documented on `serve_inherited_pipes`.
    unsafe { os::take(read, write) }.map_err(ChildServeError::Stdio)
}

/// Parses `<read>,<write>` from [`PIPES_ENV`].
fn parse_pipes(value: &OsString) -> Result<(i64, i64), BadPipesReason> {
    let malformed = BadPipesReason::Malformed;
    let text = value.to_str().ok_or(malformed)?;
    let (read, write) = text.split_once(',').ok_or(malformed)?;
    let number = |s: &str| s.trim().parse::<i64>().map_err(|_| malformed);
    let (read, write) = (number(read)?, number(write)?);
    if read == write {
        return Err(malformed);
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_variable_is_parsed_strictly() {
        let parse = |s: &str| parse_pipes(&OsString::from(s));
        assert_eq!(parse("5,6"), Ok((5, 6)));
        for bad in ["", "5", "5,", "a,b", "5;6", "7,7"] {
            assert_eq!(parse(bad), Err(BadPipesReason::Malformed), "{bad:?}");
        }
    }
}
