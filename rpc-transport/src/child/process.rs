//! The parent's side of a child service: the supervised process, and the reader and writer
//! that report its exit as the connection's end.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead, FrameReader, FrameWrite, FrameWriter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Child;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

#[cfg(doc)]
use super::{spawn, spawn_with_pipes};
#[cfg(doc)]
use rpc_core::RpcError;

/// How long the reader waits, once the child's output has ended, for the child's exit status.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long the reader keeps reading what the child wrote before it exited.
const DRAIN: Duration = Duration::from_millis(200);

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

    /// Starts supervising `child`, whose output is `output` and whose input is `input`: the
    /// connection's reader and writer report the child's exit as the connection's end, and
    /// dropping the writer (the client is gone) starts the grace period after which the child
    /// is killed.
    pub(super) fn supervise<R, W>(
        child: Child,
        grace: Duration,
        output: R,
        input: W,
    ) -> (Self, ChildReader<R>, ChildWriter<W>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (closed_tx, closed_rx) = oneshot::channel();
        let (state_tx, state) = watch::channel(ChildState::Running);
        let kill = Arc::new(Notify::new());
        let process = Self {
            pid: child.id(),
            state,
            kill: Arc::clone(&kill),
        };
        tokio::spawn(supervise(child, grace, closed_rx, kill, state_tx));
        let reader = ChildReader {
            inner: FrameReader::new(output),
            state: process.state.clone(),
            exited: None,
            blind: false,
        };
        let writer = ChildWriter {
            inner: FrameWriter::new(input),
            state: process.state.clone(),
            closed: Some(closed_tx),
        };
        (process, reader, writer)
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
pub(super) struct ChildReader<R> {
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
    fn set_frame_timeout(&mut self, timeout: Duration) {
        self.inner.set_frame_timeout(timeout);
    }

    fn holds_nothing(&self) -> bool {
        self.inner.holds_nothing()
    }

    fn pause(&mut self) {
        self.inner.pause();
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
pub(super) struct ChildWriter<W> {
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
