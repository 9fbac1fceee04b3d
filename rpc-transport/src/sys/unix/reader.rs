//! The read half of a Unix socket as a frame reader that can tell when the peer has left
//! without reading what it sent.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead, FrameReader};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::unix::OwnedReadHalf;

/// Frames from a Unix socket.
///
/// [`FrameRead::closed`] watches the socket through a duplicate of its descriptor, registered
/// on its own: the watch sees the peer's hang-up even while unread data waits in the socket, and
/// clearing the watch's readiness leaves the reader's alone. The duplicate is made the first
/// time the engine stops reading (at a limit), so a connection holds at most one extra
/// descriptor, and only then.
#[derive(Debug)]
pub(crate) struct SocketReader {
    frames: FrameReader<OwnedReadHalf>,
    watch: Option<AsyncFd<OwnedFd>>,
}

impl SocketReader {
    pub(crate) fn new(read: OwnedReadHalf) -> Self {
        Self {
            frames: FrameReader::new(read),
            watch: None,
        }
    }

    /// The watch on the socket, made on first use; `None` if it cannot be made.
    fn watch(&mut self) -> Option<&AsyncFd<OwnedFd>> {
        if self.watch.is_none() {
            let socket = self.frames.get_ref().as_ref();
            let watch = socket.as_fd().try_clone_to_owned().and_then(|fd| {
                // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and owned by it: it stays
                // open, and `as_raw_fd` returns the same descriptor, until the `AsyncFd` drops.
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(std::io::Error::from)
            });
            match watch {
                Ok(watch) => self.watch = Some(watch),
                Err(error) => {
                    tracing::debug!(%error, "cannot watch the socket for the peer leaving");
                }
            }
        }
        self.watch.as_ref()
    }
}

impl FrameRead for SocketReader {
    fn read_frame(
        &mut self,
        max_frame: u32,
    ) -> impl Future<Output = Result<Option<Bytes>, FrameError>> + Send {
        self.frames.read_frame(max_frame)
    }

    fn set_frame_timeout(&mut self, timeout: std::time::Duration) {
        self.frames.set_frame_timeout(timeout);
    }

    fn holds_nothing(&self) -> bool {
        self.frames.holds_nothing()
    }

    fn pause(&mut self) {
        self.frames.pause();
    }

    fn refused_frame_start(&self) -> &[u8] {
        self.frames.refused_frame_start()
    }

    fn consume_buffered(
        &mut self,
        max_frame: u32,
        take: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, FrameError> {
        self.frames.consume_buffered(max_frame, take)
    }

    async fn closed(&mut self) {
        let Some(watch) = self.watch() else {
            return std::future::pending().await;
        };
        loop {
            match watch.readable().await {
                Ok(guard) if guard.ready().is_read_closed() => return,
                // Data arrived: it stays in the socket for the reader; wait for the next event.
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => return std::future::pending().await,
            }
        }
    }
}
