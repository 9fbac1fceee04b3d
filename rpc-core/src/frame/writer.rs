//! Frames to a byte stream (coalesced) or a message pipe (one message each).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::frame::{FrameError, FrameWrite, TryWrite};

/// Writes frames to a byte stream, coalescing each batch into one buffer, or to a message
/// pipe, one write (one pipe message) per frame.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    /// Small frames coalesced for one write; `buf[..buf_written]` has been written.
    buf: Vec<u8>,
    buf_written: usize,
    /// Bytes taken and not written yet, in order, each written from its front: the rest of
    /// frames that [`FrameWrite::try_write_now`] took, or a large frame being written. Views
    /// of the frames themselves where possible, so a large frame is not copied. A write
    /// cancelled part-way leaves here (or in `buf`) what it had not written, which the next
    /// write finishes first: the stream never gets a frame's bytes twice or cut.
    unwritten: Vec<Bytes>,
    /// A write without waiting left a flush to do.
    flush_needed: bool,
    messages: bool,
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWriter<W> {
    /// Wraps a byte stream: frames of a batch are coalesced into as few writes as possible.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            buf_written: 0,
            unwritten: Vec::new(),
            flush_needed: false,
            messages: false,
        }
    }

    /// Wraps a message-mode pipe: every frame is written with one write, which the pipe keeps
    /// as one message.
    pub fn messages(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            buf_written: 0,
            unwritten: Vec::new(),
            flush_needed: false,
            messages: true,
        }
    }

    /// Writes `data` as far as the stream takes it without waiting; returns how much it took.
    fn write_without_waiting(inner: &mut W, data: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while let Some(rest) = data.get(written..).filter(|rest| !rest.is_empty()) {
            match Pin::new(&mut *inner).poll_write(&mut cx, rest) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        Ok(written)
    }

    /// Writes what `unwritten` holds, then the rest of `buf`; progress is kept as it goes, so
    /// that a cancelled call loses nothing and repeats nothing.
    async fn write_pending(&mut self) -> io::Result<()> {
        while let Some(front) = self.unwritten.first_mut() {
            if front.is_empty() {
                self.unwritten.remove(0);
                continue;
            }
            let n = self.inner.write(front).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            front.advance(n);
        }
        while let Some(rest) = self
            .buf
            .get(self.buf_written..)
            .filter(|rest| !rest.is_empty())
        {
            let n = self.inner.write(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.buf_written += n;
        }
        self.buf.clear();
        self.buf_written = 0;
        Ok(())
    }
}

/// Frames at least this large are written on their own rather than copied into the batch.
const COPY_LIMIT: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for FrameWriter<W> {
    async fn write_frames(&mut self, frames: &[Bytes]) -> Result<(), FrameError> {
        // First what a write without waiting, or a cancelled write, left.
        self.write_pending().await?;
        self.flush_needed = false;
        if self.messages {
            for frame in frames {
                self.inner.write_all(frame).await?;
            }
            return Ok(self.inner.flush().await?);
        }
        for frame in frames {
            if frame.len() >= COPY_LIMIT {
                self.write_pending().await?;
                self.unwritten.push(frame.clone());
                self.write_pending().await?;
            } else {
                self.buf.extend_from_slice(frame);
            }
        }
        self.write_pending().await?;
        if self.buf.capacity() > 4 * COPY_LIMIT {
            self.buf = Vec::new();
        }
        Ok(self.inner.flush().await?)
    }

    /// On a byte stream, writes the frames (coalesced, as [`FrameWrite::write_frames`] does)
    /// as far as the stream takes them without waiting, and keeps the rest for the next
    /// `write_frames`. On a message pipe, takes nothing: a message must go out in one write.
    fn try_write_now(&mut self, frames: &[Bytes]) -> Result<TryWrite, FrameError> {
        if self.messages || self.flush_needed || !self.unwritten.is_empty() || !self.buf.is_empty()
        {
            return Ok(TryWrite::WouldBlock);
        }
        if frames.len() == 1 || frames.iter().any(|frame| frame.len() >= COPY_LIMIT) {
            // One by one: a large frame (or part of one) is not copied.
            for (i, frame) in frames.iter().enumerate() {
                let written = Self::write_without_waiting(&mut self.inner, frame)?;
                if written < frame.len() {
                    if i == 0 && written == 0 {
                        return Ok(TryWrite::WouldBlock);
                    }
                    self.unwritten.push(frame.slice(written..));
                    self.unwritten.extend(frames.iter().skip(i + 1).cloned());
                    return Ok(TryWrite::Buffered);
                }
            }
        } else {
            self.buf.clear();
            for frame in frames {
                self.buf.extend_from_slice(frame);
            }
            let written = Self::write_without_waiting(&mut self.inner, &self.buf)?;
            if written == 0 {
                self.buf.clear();
                return Ok(TryWrite::WouldBlock);
            }
            if let Some(rest) = self.buf.get(written..).filter(|rest| !rest.is_empty()) {
                self.unwritten.push(Bytes::copy_from_slice(rest));
                self.buf.clear();
                return Ok(TryWrite::Buffered);
            }
            self.buf.clear();
            if self.buf.capacity() > 4 * COPY_LIMIT {
                self.buf = Vec::new();
            }
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.inner).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(TryWrite::Written),
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => {
                self.flush_needed = true;
                Ok(TryWrite::Buffered)
            }
        }
    }

    fn accepts_parts(&self) -> bool {
        !self.messages
    }

    async fn close(&mut self) -> Result<(), FrameError> {
        self.write_pending().await?;
        Ok(self.inner.shutdown().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameRead, FrameReader};
    use crate::protocol::DEFAULT_MAX_FRAME;
    use tokio::io::AsyncReadExt;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn writer_round_trips_through_reader() {
        let (tx, rx) = tokio::io::duplex(1 << 20);
        let mut writer = FrameWriter::new(tx);
        let frames: Vec<Bytes> = vec![
            Bytes::from(frame(b"small")),
            Bytes::from(frame(&vec![9; 100_000])),
            Bytes::from(frame(b"after")),
        ];
        writer.write_frames(&frames).await.expect("write");
        writer.close().await.expect("close");
        let mut reader = FrameReader::new(rx);
        assert_eq!(
            &reader
                .read_frame(DEFAULT_MAX_FRAME)
                .await
                .expect("ok")
                .expect("frame")[..],
            b"small"
        );
        assert_eq!(
            reader
                .read_frame(DEFAULT_MAX_FRAME)
                .await
                .expect("ok")
                .expect("frame")
                .len(),
            100_000
        );
        assert_eq!(
            &reader
                .read_frame(DEFAULT_MAX_FRAME)
                .await
                .expect("ok")
                .expect("frame")[..],
            b"after"
        );
        assert_eq!(reader.read_frame(DEFAULT_MAX_FRAME).await, Ok(None));
    }

    /// A write cancelled part-way (a shutdown racing the handshake's welcome) leaves the
    /// stream whole: the next write finishes the first frame, then sends its own. Before, it
    /// sent the first frame's bytes again from the start, after the part already written.
    #[tokio::test]
    async fn a_cancelled_write_leaves_the_stream_whole() {
        use futures_util::FutureExt;
        for size in [100, 100_000] {
            let (tx, rx) = tokio::io::duplex(8);
            let mut writer = FrameWriter::new(tx);
            let first = Bytes::from(frame(&vec![1; size]));
            // Polled once: 8 bytes go out, then it waits; dropped there.
            assert!(writer
                .write_frames(std::slice::from_ref(&first))
                .now_or_never()
                .is_none());
            let reading = tokio::spawn(async move {
                let mut reader = FrameReader::new(rx);
                let mut frames = Vec::new();
                while let Ok(Some(frame)) = reader.read_frame(DEFAULT_MAX_FRAME).await {
                    frames.push(frame);
                }
                frames
            });
            let second = Bytes::from(frame(b"x"));
            writer.write_frames(&[second]).await.expect("writes");
            writer.close().await.expect("closes");
            let frames = reading.await.expect("reader");
            assert_eq!(frames.len(), 2, "{size}");
            assert_eq!(frames[0].len(), size);
            assert_eq!(&frames[1][..], b"x");
        }
    }

    #[tokio::test]
    async fn writing_without_waiting_keeps_what_the_stream_does_not_take() {
        let (tx, mut rx) = tokio::io::duplex(10);
        let mut writer = FrameWriter::new(tx);
        let first = Bytes::from(frame(&[1; 20]));
        // 10 of its 24 bytes fit; the rest waits in the writer, which takes nothing more.
        assert_eq!(
            writer
                .try_write_now(std::slice::from_ref(&first))
                .expect("ok"),
            TryWrite::Buffered
        );
        let second = Bytes::from(frame(&[2; 3]));
        assert_eq!(
            writer
                .try_write_now(std::slice::from_ref(&second))
                .expect("ok"),
            TryWrite::WouldBlock
        );
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).await.expect("reads");
            all
        });
        writer.write_frames(&[second]).await.expect("writes");
        writer.close().await.expect("closes");
        let mut expected = frame(&[1; 20]);
        expected.extend(frame(&[2; 3]));
        assert_eq!(reading.await.expect("reader"), expected);

        // An idle stream with room takes a batch in one go.
        let (tx, mut rx) = tokio::io::duplex(100);
        let mut writer = FrameWriter::new(tx);
        let batch = [Bytes::from(frame(b"ab")), Bytes::from(frame(b"cd"))];
        assert_eq!(writer.try_write_now(&batch).expect("ok"), TryWrite::Written);
        let mut got = [0; 12];
        rx.read_exact(&mut got).await.expect("reads");
        assert_eq!(&got[..], &[frame(b"ab"), frame(b"cd")].concat()[..]);
        // A message pipe never writes part of a message this way.
        let (tx, _rx) = tokio::io::duplex(100);
        assert_eq!(
            FrameWriter::messages(tx).try_write_now(&batch).expect("ok"),
            TryWrite::WouldBlock
        );
    }
}
