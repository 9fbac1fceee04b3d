//! Frames over a pipe: the byte-stream frame reader, and one message per frame written.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{FrameError, FrameRead, FrameReader, FrameWriter};

use super::pipe::{Pipe, ReadHalf, WriteHalf};
use super::state::other_end_gone;

/// Frames from a pipe, read as a byte stream: a frame may arrive in several messages and a
/// message may hold several frames (see the module documentation).
///
/// [`FrameRead::closed`] asks the kernel for the pipe's state: it sees the peer leaving even
/// while what it wrote waits unread.
#[derive(Debug)]
pub(crate) struct PipeReader {
    frames: FrameReader<ReadHalf>,
    /// The pipe, for its state.
    pub(super) pipe: Arc<Pipe>,
}

/// Frames to a pipe, each written as one message.
pub(crate) type PipeWriter = FrameWriter<WriteHalf>;

/// The reader and writer of one pipe end (a duplex pipe).
pub(super) fn duplex(pipe: Pipe) -> (PipeReader, PipeWriter) {
    let pipe = Arc::new(pipe);
    (reader(Arc::clone(&pipe)), writer(pipe))
}

/// The frame reader of a pipe.
pub(super) fn reader(pipe: Arc<Pipe>) -> PipeReader {
    PipeReader {
        frames: FrameReader::new(ReadHalf::new(Arc::clone(&pipe))),
        pipe,
    }
}

/// The frame writer of a pipe.
pub(super) fn writer(pipe: Arc<Pipe>) -> PipeWriter {
    FrameWriter::messages(WriteHalf(pipe))
}

impl FrameRead for PipeReader {
    fn read_frame(
        &mut self,
        max_frame: u32,
    ) -> impl Future<Output = Result<Option<Bytes>, FrameError>> + Send {
        self.frames.read_frame(max_frame)
    }

    fn set_frame_timeout(&mut self, timeout: Duration) {
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
        other_end_gone(self.pipe.handle()).await;
    }
}
