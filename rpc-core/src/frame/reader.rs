//! Whole frames from a byte stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use tokio::time::{Instant, Sleep};

use crate::frame::{check_len, FrameError, FrameRead};
use crate::protocol::LEN_PREFIX;

/// How much the reader asks the OS for at a time; [`GROWTH`] of them are the most it sets aside
/// for a frame whose first bytes only have arrived.
const READ_CHUNK: usize = 16 * 1024;

/// How many times the data received of a frame its buffer may grow to at most, while the rest
/// is missing: what a peer that stalls inside a frame can make the reader hold, for what it
/// sent (with at least [`READ_CHUNK`] counted as sent). Each growth may copy what arrived, so
/// a larger factor copies less of a large frame: eightfold, a frame of 1 MiB is copied 144 KiB
/// on the way (fourfold, 336 KiB, which cost the 1 MiB echo benchmark 6% of its rate).
const GROWTH: usize = 8;

/// Below this much free room, a buffer holding part of a frame grows before the next read.
const MIN_SPARE: usize = 64;

/// Allocations up to this size are shared by the frames read into them; see [`PIN_RATIO`].
pub(crate) const PIN_FREE: usize = 64 * 1024;

/// A frame at most this many times shorter than the allocation it was read into is returned as
/// a view of it (no copy); a shorter one is copied out, once the allocation is larger than
/// [`PIN_FREE`] (after a large frame). So a frame that is kept (a stream's item waiting for its
/// taker) keeps at most `max(PIN_FREE, PIN_RATIO * its length)` bytes of memory alive, however
/// a peer interleaves large frames and small ones; keepers copy frames shorter than
/// [`KEEP_VIEW_MIN`] to bound the rest.
const PIN_RATIO: usize = 8;

/// Kept frames shorter than this are copied by those who keep them: a view of a shorter frame
/// could keep more than [`PIN_RATIO`] times its length alive.
pub(crate) const KEEP_VIEW_MIN: usize = PIN_FREE / PIN_RATIO;

/// Reassembles frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    /// When part of the frame in `buf` was first seen waiting for the rest; `None` between
    /// frames.
    started: Option<Instant>,
    /// When the engine stopped reading in the middle of a frame ([`FrameRead::pause`]): the
    /// pause is added to the frame's time at the next read.
    paused: Option<Instant>,
    /// The end of the allocation `buf` reads into, and its size: frames much shorter than it
    /// are copied out ([`PIN_RATIO`]).
    allocation: (usize, usize),
    /// How long a started frame may take to complete.
    frame_timeout: Option<Duration>,
    /// The timer of the frame timeout, kept from frame to frame: moving a registered timer's
    /// deadline later costs no lock of the runtime's timer driver, where a timer made for each
    /// wait registers and deregisters under that lock. With the runtime it belongs to: a reader
    /// read from another runtime makes a new one.
    timer: Option<(tokio::runtime::Id, Pin<Box<Sleep>>)>,
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameReader<R> {
    /// Reads frames from `inner`; the engine gives the largest frame it accepts on each read.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            started: None,
            paused: None,
            allocation: (0, 0),
            frame_timeout: None,
            timer: None,
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Takes a complete frame off the front of the buffer, if there is one.
    fn take_frame(&mut self, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = check_len(*prefix, max_frame)?;
        let total = LEN_PREFIX + len;
        if self.buf.len() < total {
            // Once the room set aside is (nearly) full, set aside room for what is missing, but
            // never more than `GROWTH - 1` times the data received of the frame so far (or of a
            // chunk): a large frame grows the buffer `GROWTH`-fold at a time, and a peer that
            // claims a large frame and stalls costs at most `GROWTH` times what it sent, or
            // `GROWTH` chunks. Growing only a full buffer keeps `reserve` from doubling a
            // buffer that lacks a few bytes of the request on top of it.
            if self.buf.capacity() - self.buf.len() < MIN_SPARE {
                let missing = total - self.buf.len();
                self.buf
                    .reserve(missing.min((GROWTH - 1) * self.buf.len().max(READ_CHUNK)));
                self.note_allocation();
            }
            return Ok(None);
        }
        self.buf.advance(LEN_PREFIX);
        self.started = None;
        let frame = self.buf.split_to(len);
        let (_, allocation) = self.allocation;
        if self.buf.is_empty() && self.buf.capacity() > PIN_FREE {
            // Between frames the reader holds no buffer (a large frame's was kept so far).
            self.buf = BytesMut::new();
            self.note_allocation();
        }
        if allocation > PIN_FREE && len.saturating_mul(PIN_RATIO) < allocation {
            return Ok(Some(Bytes::copy_from_slice(&frame)));
        }
        Ok(Some(frame.freeze()))
    }

    /// Notes the allocation `buf` reads into after it may have changed: a new one starts at
    /// `buf`'s first byte.
    fn note_allocation(&mut self) {
        let end = self.buf.as_ptr() as usize + self.buf.capacity();
        if end != self.allocation.0 {
            self.allocation = (end, self.buf.len() + self.buf.capacity());
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for FrameReader<R> {
    fn set_frame_timeout(&mut self, timeout: Duration) {
        self.frame_timeout = Some(timeout);
    }

    fn holds_nothing(&self) -> bool {
        self.buf.is_empty()
    }

    fn pause(&mut self) {
        if self.started.is_some() && self.paused.is_none() {
            self.paused = Some(Instant::now());
        }
    }

    fn refused_frame_start(&self) -> &[u8] {
        // A refused frame stays at the front of the buffer.
        &self.buf
    }

    fn consume_buffered(
        &mut self,
        max_frame: u32,
        take: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(false);
        };
        let len = check_len(*prefix, max_frame)?;
        match self.buf.get(LEN_PREFIX..LEN_PREFIX + len) {
            Some(payload) if take(payload) => {
                self.buf.advance(LEN_PREFIX + len);
                self.started = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn read_frame(&mut self, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        if let Some(paused) = self.paused.take() {
            // The engine did not read meanwhile: the client was not waited for.
            if let Some(started) = self.started.as_mut() {
                *started += paused.elapsed();
            }
        }
        loop {
            if let Some(frame) = self.take_frame(max_frame)? {
                return Ok(Some(frame));
            }
            if !self.buf.is_empty() && self.started.is_none() {
                // Part of a frame is here: its clock starts.
                self.started = Some(Instant::now());
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
                .await?
            } else {
                if self.buf.capacity() - self.buf.len() < MIN_SPARE {
                    self.buf.reserve(READ_CHUNK);
                }
                // Inside a frame: the rest must come within the frame timeout.
                match (self.started, self.frame_timeout) {
                    (Some(started), Some(timeout)) => {
                        let deadline = started + timeout;
                        let runtime = tokio::runtime::Handle::current().id();
                        let timer = match &mut self.timer {
                            Some((id, timer)) if *id == runtime => {
                                if timer.deadline() != deadline {
                                    timer.as_mut().reset(deadline);
                                }
                                timer
                            }
                            kept => {
                                let timer = Box::pin(tokio::time::sleep_until(deadline));
                                &mut kept.insert((runtime, timer)).1
                            }
                        };
                        let mut read = std::pin::pin!(self.inner.read_buf(&mut self.buf));
                        std::future::poll_fn(|cx| {
                            if let Poll::Ready(read) = read.as_mut().poll(cx) {
                                return Poll::Ready(read.map_err(FrameError::from));
                            }
                            ready!(timer.as_mut().poll(cx));
                            Poll::Ready(Err(FrameError::Stalled(timeout)))
                        })
                        .await?
                    }
                    _ => self.inner.read_buf(&mut self.buf).await?,
                }
            };
            self.note_allocation();
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let need = match self.buf.first_chunk::<LEN_PREFIX>() {
                    Some(prefix) => LEN_PREFIX + u32::from_le_bytes(*prefix) as usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DEFAULT_MAX_FRAME;
    use tokio::io::AsyncWriteExt;

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
        let mut reader = FrameReader::new(rx);
        let mut out = Vec::new();
        let result = loop {
            match reader.read_frame(max).await {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        writer.await.expect("writer");
        result
    }

    #[tokio::test]
    async fn buffered_frames_are_consumed_only_whole_and_wanted() {
        let mut bytes = frame(b"a1");
        bytes.extend(frame(b"b2"));
        bytes.extend(frame(b"c3"));
        // Half of a fourth frame: in the buffer, not whole.
        bytes.extend(&frame(b"b4")[..3]);
        let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
        let first = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        assert_eq!(first.as_deref(), Some(&b"a1"[..]));
        let mut kept = Vec::new();
        let mut b_only = |payload: &[u8]| {
            let wanted = payload.first() == Some(&b'b');
            if wanted {
                kept.push(payload.to_vec());
            }
            wanted
        };
        let taken = reader.consume_buffered(DEFAULT_MAX_FRAME, &mut b_only);
        assert_eq!(taken, Ok(true));
        let not_wanted = reader.consume_buffered(DEFAULT_MAX_FRAME, &mut b_only);
        assert_eq!(not_wanted, Ok(false), "c3 stays for read_frame");
        let third = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        assert_eq!(third.as_deref(), Some(&b"c3"[..]));
        let partial = reader.consume_buffered(DEFAULT_MAX_FRAME, &mut b_only);
        assert_eq!(partial, Ok(false), "b4 is not whole");
        assert!(!reader.holds_nothing(), "half of b4 is held");
        assert_eq!(kept, [b"b2".to_vec()]);
        // A frame in the buffer over the maximum is refused as `read_frame` refuses it.
        let mut bytes = frame(b"a");
        bytes.extend(frame(b"b-long"));
        let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
        let first = reader.read_frame(4).await.expect("read");
        assert_eq!(first.as_deref(), Some(&b"a"[..]));
        let over = reader.consume_buffered(4, &mut |_| true);
        assert!(matches!(over, Err(FrameError::TooLarge { .. })), "{over:?}");
    }

    /// Where the frame after `first` in the same buffer would start: a frame that is a view
    /// of that buffer starts there.
    fn next_after(first: &Bytes) -> usize {
        first.as_ptr() as usize + first.len() + LEN_PREFIX
    }

    #[tokio::test]
    async fn small_frames_after_a_large_one_are_copied_out_of_its_buffer() {
        // Small frames in a small buffer are views of it, one after the other.
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"two"));
        let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
        let one = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        let two = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        let (Some(one), Some(two)) = (one, two) else {
            panic!("two frames");
        };
        assert_eq!(two.as_ptr() as usize, next_after(&one), "a view");
        // After a large frame, a small one read into the same buffer is copied out, so that
        // keeping it does not keep the large buffer alive.
        for size in [
            100_000,
            200_000,
            300_000,
            500_000,
            700_000,
            1 << 20,
            3 << 20,
        ] {
            let large = vec![7u8; size];
            let mut bytes = frame(&large);
            bytes.extend(frame(b"tiny"));
            let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
            let mut frames = Vec::new();
            while let Some(frame) = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read") {
                frames.push(frame);
            }
            let [first, tiny] = &frames[..] else {
                panic!("two frames, got {}", frames.len());
            };
            assert_eq!((first.len(), &tiny[..]), (large.len(), &b"tiny"[..]));
            // Without the copy, the tiny frame lands in the large frame's buffer for some of
            // these sizes (200,000 and 1 MiB here), depending on how the buffer grew.
            assert_ne!(
                tiny.as_ptr() as usize,
                next_after(first),
                "after a frame of {size} bytes, the tiny frame is a copy"
            );
        }
        // And between frames, the reader keeps no large buffer.
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_reader_holds_nothing_once_every_frame_it_read_is_returned() {
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"two"));
        let mut reader = FrameReader::new(std::io::Cursor::new(bytes));
        assert!(reader.holds_nothing(), "nothing read yet");
        let first = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        assert_eq!(first.as_deref(), Some(&b"one"[..]));
        assert!(
            !reader.holds_nothing(),
            "the second frame came with the first"
        );
        let second = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("read");
        assert_eq!(second.as_deref(), Some(&b"two"[..]));
        assert!(reader.holds_nothing());
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
                let got = reader
                    .read_frame(DEFAULT_MAX_FRAME)
                    .await
                    .expect("frame")
                    .expect("some");
                assert_eq!(&got[..], &p[..], "cut at {cut}");
            }
            assert_eq!(reader.read_frame(DEFAULT_MAX_FRAME).await, Ok(None));
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
        let mut reader = FrameReader::new(rx);
        assert_eq!(
            reader.read_frame(1024).await,
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
        let pending = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            reader.read_frame(DEFAULT_MAX_FRAME),
        )
        .await;
        assert!(pending.is_err(), "frame cannot be complete");
        assert!(
            reader.buf.capacity() <= GROWTH * READ_CHUNK,
            "capacity {}",
            reader.buf.capacity()
        );
    }

    /// Hands out its pieces one read at a time, then waits forever.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                Some(piece) => {
                    buf.put_slice(&piece);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_claimed_frame_arriving_in_small_pieces_grows_its_buffer_once() {
        // The prefix comes in two reads, the payload a few bytes at a time: each new piece
        // must not grow (or double) the room already set aside.
        let prefix = DEFAULT_MAX_FRAME.to_le_bytes();
        let (head, tail) = prefix.split_at(1);
        let mut pieces = vec![head.to_vec(), [tail, &[0]].concat()];
        pieces.extend(std::iter::repeat_n(vec![0; 2], 20));
        let mut reader = FrameReader::new(Pieces(pieces.into()));
        let pending = std::future::poll_fn(|cx| {
            let read = std::pin::pin!(reader.read_frame(DEFAULT_MAX_FRAME));
            Poll::Ready(read.poll(cx).is_pending())
        })
        .await;
        assert!(pending, "frame cannot be complete");
        assert_eq!(reader.buf.len(), 45);
        assert!(
            reader.buf.capacity() <= GROWTH * READ_CHUNK,
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

    /// Time the engine spends not reading ([`FrameRead::pause`]) in the middle of a frame does
    /// not count against the frame timeout: the rest may come after a pause longer than the
    /// timeout. A frame that stalls while the engine reads still fails.
    #[tokio::test(start_paused = true)]
    async fn a_pause_of_the_engine_does_not_count_against_the_frame_timeout() {
        use futures_util::FutureExt;
        let timeout = Duration::from_secs(1);
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(rx);
        reader.set_frame_timeout(timeout);
        let whole = frame(b"a frame that arrives in two pieces");
        let (first, rest) = whole.split_at(10);

        tx.write_all(first).await.expect("write");
        // The first piece is read, and the frame's clock starts.
        assert!(reader
            .read_frame(DEFAULT_MAX_FRAME)
            .now_or_never()
            .is_none());
        reader.pause();
        tokio::time::advance(timeout * 3).await;
        // Reading again, the rest comes within the timeout of the pause's end.
        {
            let reading = reader.read_frame(DEFAULT_MAX_FRAME);
            tokio::pin!(reading);
            assert!(
                reading.as_mut().now_or_never().is_none(),
                "the pause counted against the frame"
            );
            tokio::time::advance(timeout / 2).await;
            tx.write_all(rest).await.expect("write");
            let got = reading.await.expect("not stalled").expect("a frame");
            assert_eq!(got.get(..), whole.get(LEN_PREFIX..));
        }

        tx.write_all(first).await.expect("write");
        let stalled = reader.read_frame(DEFAULT_MAX_FRAME).await;
        assert_eq!(stalled, Err(FrameError::Stalled(timeout)));
    }

    /// A reader read from a second runtime once the first is gone: its frame timeout still
    /// holds (the timer kept from the first runtime would panic, its driver shut down).
    #[test]
    fn a_reader_read_from_another_runtime_keeps_its_frame_timeout() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        };
        let timeout = Duration::from_millis(50);
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        reader.set_frame_timeout(timeout);
        let whole = frame(b"hello");
        let (start, rest) = whole.split_at(3);
        // A frame that arrives in two parts: the second read, inside the frame, makes the timer.
        let first = runtime().block_on(async {
            tx.write_all(start).await.expect("write");
            let (frame, ()) = tokio::join!(reader.read_frame(DEFAULT_MAX_FRAME), async {
                tokio::task::yield_now().await;
                tx.write_all(rest).await.expect("write");
            });
            frame
        });
        assert_eq!(first, Ok(Some(Bytes::from_static(b"hello"))));
        // The first runtime is gone; a frame that stalls on the second one fails as it should.
        let stalled = runtime().block_on(async {
            tx.write_all(start).await.expect("write");
            reader.read_frame(DEFAULT_MAX_FRAME).await
        });
        assert_eq!(stalled, Err(FrameError::Stalled(timeout)));
    }
}
