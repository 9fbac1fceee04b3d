//! Framing: whole messages over byte streams and message pipes.
//!
//! A frame is `| len: u32 LE | payload |` (see [`crate::protocol`]). [`FrameReader`] turns any
//! [`AsyncRead`] into whole payloads: it keeps partial frames until they are complete, splits
//! reads that hold several frames, checks `len` against the maximum *before* setting any memory
//! aside, and never reserves the claimed length up front (a peer that claims the maximum and
//! stalls costs one read buffer, not the maximum; a large frame's buffer grows with the data
//! received). Between frames it holds no buffer, so an idle connection costs none.
//! [`FrameWriter`] writes batches of encoded frames, coalesced into as few writes as the
//! transport allows, and on byte streams can write without waiting
//! ([`FrameWrite::try_write_now`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::protocol::{Header, DEFAULT_MAX_FRAME, LEN_PREFIX};

/// How much the reader asks the OS for at a time, and the most it sets aside for a frame that
/// has not arrived yet.
const READ_CHUNK: usize = 16 * 1024;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's length field exceeds the maximum; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The claimed length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// A frame with a length of zero.
    #[error("empty frame")]
    Empty,
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the frame, prefix included.
        have: usize,
        /// Bytes the frame needs, prefix included (4 while the prefix itself is incomplete).
        need: usize,
    },
    /// A message pipe ended a message where the frame's length says it goes on, or the reverse.
    #[error("pipe message boundary does not match the frame length")]
    BoundaryMismatch,
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(io::ErrorKind),
    /// The process on the other end exited (a child process serving over its stdio); no
    /// frame can follow.
    #[error("peer process exited ({0})")]
    PeerExited(std::process::ExitStatus),
}

/// Reads whole frames from a transport.
pub trait FrameRead: Send + 'static {
    /// Reads the next frame's payload (without its length prefix); `Ok(None)` when the peer
    /// closed the stream cleanly between frames.
    ///
    /// Cancel-safe: if the future is dropped, no data is lost and the next call goes on.
    ///
    /// # Errors
    ///
    /// A [`FrameError`]; after one the transport is unusable.
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<Bytes>, FrameError>> + Send;
}

/// Writes encoded frames (each with its length prefix) to a transport.
pub trait FrameWrite: Send + 'static {
    /// Writes the frames in order. A byte stream may coalesce them into one write; a message
    /// transport writes each frame as one message.
    ///
    /// # Errors
    ///
    /// The I/O error; after one the transport is unusable.
    fn write_frames(&mut self, frames: &[Bytes]) -> impl Future<Output = io::Result<()>> + Send;

    /// Writes the frames now if the transport takes them without waiting. A connection whose
    /// writer is idle calls it from the task that sends, to save a hop to the writer task.
    ///
    /// It must not wait and must leave the transport in a state where
    /// [`write_frames`](FrameWrite::write_frames) goes on correctly. The default takes nothing
    /// ([`TryWrite::WouldBlock`]): every frame then goes through `write_frames`.
    ///
    /// # Errors
    ///
    /// The I/O error; after one the transport is unusable.
    fn try_write_now(&mut self, frames: &[Bytes]) -> io::Result<TryWrite> {
        let _ = frames;
        Ok(TryWrite::WouldBlock)
    }

    /// Flushes and closes the sending direction, so the peer reads end-of-stream.
    ///
    /// # Errors
    ///
    /// The I/O error of the flush or shutdown.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// What [`FrameWrite::try_write_now`] did with the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryWrite {
    /// All of them are written.
    Written,
    /// All of them are taken, but some bytes wait in the writer: the next
    /// [`write_frames`](FrameWrite::write_frames) (with no frames if need be) writes them first.
    Buffered,
    /// None of them is taken: the transport would block.
    WouldBlock,
}

/// Reassembles frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: u32,
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameReader<R> {
    /// A reader that accepts frames up to [`DEFAULT_MAX_FRAME`].
    pub fn new(inner: R) -> Self {
        Self::with_max_frame(inner, DEFAULT_MAX_FRAME)
    }

    /// A reader that accepts frames up to `max_frame` bytes (the `len` field).
    pub fn with_max_frame(inner: R, max_frame: u32) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            max_frame,
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Takes a complete frame off the front of the buffer, if there is one.
    fn take_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = self.buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len_bytes);
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        // `len` <= max_frame <= u32::MAX fits usize on every supported target.
        let total = LEN_PREFIX + len as usize;
        if self.buf.len() < total {
            // Set aside room for what is missing, but never more than the data received of the
            // frame so far, or one chunk: a large frame grows the buffer by doubling, and a
            // peer that claims a large frame and stalls costs one chunk.
            let missing = total - self.buf.len();
            self.buf
                .reserve(missing.min(self.buf.len().max(READ_CHUNK)));
            return Ok(None);
        }
        self.buf.advance(LEN_PREFIX);
        Ok(Some(self.buf.split_to(len as usize).freeze()))
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for FrameReader<R> {
    async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            let n = if self.buf.is_empty() {
                // Between frames: wait for data in a chunk on the stack and keep only what
                // arrives, so that an idle connection holds no read buffer.
                let (inner, buf) = (&mut self.inner, &mut self.buf);
                std::future::poll_fn(|cx| {
                    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
                    let mut read = ReadBuf::uninit(&mut chunk);
                    ready!(Pin::new(&mut *inner).poll_read(cx, &mut read))?;
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok::<_, io::Error>(read.filled().len()))
                })
                .await
            } else {
                if self.buf.capacity() - self.buf.len() < 64 {
                    self.buf.reserve(READ_CHUNK);
                }
                self.inner.read_buf(&mut self.buf).await
            }
            .map_err(|e| FrameError::Io(e.kind()))?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let need = match self.buf.get(..LEN_PREFIX) {
                    Some(p) => LEN_PREFIX + u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize,
                    None => LEN_PREFIX,
                };
                return Err(FrameError::Truncated {
                    have: self.buf.len(),
                    need,
                });
            }
        }
    }
}

/// Writes frames to a byte stream, coalescing each batch into one buffer, or to a message
/// pipe, one write (one pipe message) per frame.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes of frames taken by [`FrameWrite::try_write_now`] that the stream did not take.
    unwritten: Vec<u8>,
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
}

/// Frames at least this large are written on their own rather than copied into the batch.
const COPY_LIMIT: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for FrameWriter<W> {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        if !self.unwritten.is_empty() {
            self.inner.write_all(&self.unwritten).await?;
            self.unwritten.clear();
        }
        self.flush_needed = false;
        if self.messages {
            for frame in frames {
                self.inner.write_all(frame).await?;
            }
            return self.inner.flush().await;
        }
        for frame in frames {
            if frame.len() >= COPY_LIMIT {
                if !self.buf.is_empty() {
                    self.inner.write_all(&self.buf).await?;
                    self.buf.clear();
                }
                self.inner.write_all(frame).await?;
            } else {
                self.buf.extend_from_slice(frame);
            }
        }
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        if self.buf.capacity() > 4 * COPY_LIMIT {
            self.buf = Vec::new();
        }
        self.inner.flush().await
    }

    /// On a byte stream, writes the frames (coalesced, as [`FrameWrite::write_frames`] does)
    /// as far as the stream takes them without waiting, and keeps the rest for the next
    /// `write_frames`. On a message pipe, takes nothing: a message must go out in one write.
    fn try_write_now(&mut self, frames: &[Bytes]) -> io::Result<TryWrite> {
        if self.messages || self.flush_needed || !self.unwritten.is_empty() {
            return Ok(TryWrite::WouldBlock);
        }
        let (data, written) = match frames {
            [] => return Ok(TryWrite::Written),
            [frame] => (
                &frame[..],
                Self::write_without_waiting(&mut self.inner, frame)?,
            ),
            frames => {
                self.buf.clear();
                for frame in frames {
                    self.buf.extend_from_slice(frame);
                }
                let written = Self::write_without_waiting(&mut self.inner, &self.buf)?;
                (&self.buf[..], written)
            }
        };
        if written == 0 {
            self.buf.clear();
            return Ok(TryWrite::WouldBlock);
        }
        if let Some(rest) = data.get(written..).filter(|rest| !rest.is_empty()) {
            self.unwritten.extend_from_slice(rest);
            self.buf.clear();
            return Ok(TryWrite::Buffered);
        }
        self.buf.clear();
        if self.buf.capacity() > 4 * COPY_LIMIT {
            self.buf = Vec::new();
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.inner).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(TryWrite::Written),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                self.flush_needed = true;
                Ok(TryWrite::Buffered)
            }
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        if !self.unwritten.is_empty() {
            self.inner.write_all(&self.unwritten).await?;
            self.unwritten.clear();
        }
        self.inner.shutdown().await
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("encoding failed")]
    Postcard(#[from] postcard::Error),
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: u64, max: u32 },
}

/// Encodes one frame: prefix, header, then the encoding of the body, if any.
///
/// The frame is sized first and encoded into one allocation of exactly its length, so that
/// turning it into [`Bytes`] neither copies nor reallocates.
pub(crate) fn encode_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: FrameBody<'_, B>,
    max_frame: u32,
) -> Result<Bytes, EncodeError> {
    let header_len = postcard::experimental::serialized_size(header)?;
    let body_len = match body {
        FrameBody::None => 0,
        FrameBody::Value(value) => postcard::experimental::serialized_size(value)?,
    };
    let len32 = checked_len(header_len as u64 + body_len as u64, max_frame)?;
    let mut out = Vec::with_capacity(LEN_PREFIX + header_len + body_len);
    out.extend_from_slice(&len32.to_le_bytes());
    encode_into(header, &mut out)?;
    match body {
        FrameBody::None => {}
        FrameBody::Value(value) => encode_into(value, &mut out)?,
    }
    if out.len() != LEN_PREFIX + len32 as usize {
        // The size pass and the encoding disagree: a `Serialize` impl that is not deterministic.
        return Err(EncodeError::Postcard(postcard::Error::SerializeBufferFull));
    }
    Ok(Bytes::from(out))
}

/// Checks a frame length against the maximum.
pub(crate) fn checked_len(len: u64, max_frame: u32) -> Result<u32, EncodeError> {
    match u32::try_from(len) {
        Ok(len32) if len32 <= max_frame => Ok(len32),
        _ => Err(EncodeError::TooLarge {
            len,
            max: max_frame,
        }),
    }
}

/// Appends the postcard encoding of `value` to `out`, copying byte strings in one block.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(value, VecFlavor(out))
}

/// A postcard output that appends to a borrowed `Vec`.
struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The body of a frame to encode.
pub(crate) enum FrameBody<'a, B: ?Sized> {
    None,
    Value(&'a B),
}

/// Encodes a header-only frame (no body). Header-only frames are small and always fit.
pub(crate) fn header_frame(header: &Header) -> Bytes {
    encode_frame::<()>(header, FrameBody::None, u32::MAX).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Feeds `bytes` to a reader in chunks of `chunk` bytes and collects the frames.
    async fn read_all(bytes: Vec<u8>, chunk: usize, max: u32) -> Result<Vec<Bytes>, FrameError> {
        let (mut tx, rx) = tokio::io::duplex(bytes.len().max(1));
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(chunk) {
                tx.write_all(piece).await.expect("write");
                tx.flush().await.expect("flush");
                tokio::task::yield_now().await;
            }
        });
        let mut reader = FrameReader::with_max_frame(rx, max);
        let mut out = Vec::new();
        let result = loop {
            match reader.read_frame().await {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        writer.await.expect("writer");
        result
    }

    #[tokio::test]
    async fn frames_split_at_every_byte_reassemble() {
        let payloads: Vec<Vec<u8>> = vec![b"a".to_vec(), (0..=255u8).collect(), vec![7; 1000]];
        let mut stream = Vec::new();
        for p in &payloads {
            stream.extend(frame(p));
        }
        // Split the stream at every position into two reads.
        for cut in 0..=stream.len() {
            let (mut tx, rxs) = tokio::io::duplex(stream.len());
            let head = stream[..cut].to_vec();
            let tail = stream[cut..].to_vec();
            let w = tokio::spawn(async move {
                tx.write_all(&head).await.expect("write");
                tokio::task::yield_now().await;
                tx.write_all(&tail).await.expect("write");
            });
            let mut reader = FrameReader::new(rxs);
            for p in &payloads {
                let got = reader.read_frame().await.expect("frame").expect("some");
                assert_eq!(&got[..], &p[..], "cut at {cut}");
            }
            assert_eq!(reader.read_frame().await, Ok(None));
            w.await.expect("writer");
        }
        // And one byte at a time.
        let got = read_all(stream, 1, DEFAULT_MAX_FRAME)
            .await
            .expect("frames");
        assert_eq!(got.len(), payloads.len());
        for (g, p) in got.iter().zip(&payloads) {
            assert_eq!(&g[..], &p[..]);
        }
    }

    #[tokio::test]
    async fn many_frames_merged_in_one_read() {
        let mut stream = Vec::new();
        for i in 0..500u32 {
            stream.extend(frame(&i.to_le_bytes()));
        }
        let len = stream.len();
        let got = read_all(stream, len, DEFAULT_MAX_FRAME)
            .await
            .expect("frames");
        assert_eq!(got.len(), 500);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(&f[..], &(i as u32).to_le_bytes());
        }
    }

    #[tokio::test]
    async fn oversized_frame_refused_from_header_alone() {
        // Only the prefix arrives: the reader must refuse without waiting for the payload.
        let (mut tx, rx) = tokio::io::duplex(64);
        tx.write_all(&1025u32.to_le_bytes()).await.expect("write");
        let mut reader = FrameReader::with_max_frame(rx, 1024);
        assert_eq!(
            reader.read_frame().await,
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        // Exactly the maximum is fine.
        let got = read_all(frame(&[1; 1024]), 100, 1024)
            .await
            .expect("frames");
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn claimed_length_is_not_reserved_up_front() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tx.write_all(&DEFAULT_MAX_FRAME.to_le_bytes())
            .await
            .expect("write");
        tx.write_all(&[0; 10]).await.expect("write");
        let mut reader = FrameReader::new(rx);
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), reader.read_frame()).await;
        assert!(pending.is_err(), "frame cannot be complete");
        assert!(
            reader.buf.capacity() <= 2 * READ_CHUNK,
            "capacity {}",
            reader.buf.capacity()
        );
    }

    #[tokio::test]
    async fn truncated_and_empty_frames_are_errors() {
        let mut bytes = frame(b"hello");
        bytes.truncate(6);
        assert_eq!(
            read_all(bytes, 3, 1024).await,
            Err(FrameError::Truncated { have: 6, need: 9 })
        );
        assert_eq!(
            read_all(vec![1, 0], 3, 1024).await,
            Err(FrameError::Truncated { have: 2, need: 4 })
        );
        assert_eq!(
            read_all(vec![0, 0, 0, 0], 3, 1024).await,
            Err(FrameError::Empty)
        );
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
            &reader.read_frame().await.expect("ok").expect("frame")[..],
            b"small"
        );
        assert_eq!(
            reader.read_frame().await.expect("ok").expect("frame").len(),
            100_000
        );
        assert_eq!(
            &reader.read_frame().await.expect("ok").expect("frame")[..],
            b"after"
        );
        assert_eq!(reader.read_frame().await, Ok(None));
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

    #[test]
    fn encode_checks_the_maximum() {
        let header = Header::Notify { method: 0 };
        let ok = encode_frame(&header, FrameBody::Value(&[0u8; 10]), 12).expect("fits");
        assert_eq!(ok.len(), 4 + 12);
        assert!(matches!(
            encode_frame(&header, FrameBody::Value(&[0u8; 11]), 12),
            Err(EncodeError::TooLarge { len: 13, max: 12 })
        ));
    }
}
