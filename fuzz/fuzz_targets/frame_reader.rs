//! `FrameReader` against a reference parser, with the input choosing how the stream is cut
//! into reads, where reads would block, and whether a blocked `read_frame` is dropped.
//!
//! Oracles:
//! * the frames read, and how reading ends (clean end, `Truncated { have, need }`,
//!   `TooLarge { len, max }`, `Empty`), are those of the reference parser;
//! * whenever a read would block, every frame complete in the bytes delivered so far has been
//!   returned, and a bad length prefix among them has been reported (nothing waits on data it
//!   does not need);
//! * dropping a blocked `read_frame` loses nothing (it is documented cancel-safe);
//! * no allocation while reading is larger than a small multiple of the bytes delivered
//!   (the claimed length is never reserved up front).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rpc_core::frame::{FrameError, FrameRead, FrameReader};
use rpc_fuzz::{parse_frames, RefEnd};
use tokio::io::{AsyncRead, ReadBuf};

/// Records the largest allocation made while `TRACKING` is set.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call goes to the system allocator unchanged; the bookkeeping uses
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's guarantees are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The largest frame the reader is told to accept.
#[derive(Debug, Arbitrary)]
enum MaxFrame {
    Small(u8),
    Any(u32),
}

/// One step of the stream.
#[derive(Debug, Arbitrary)]
enum Piece {
    /// Bytes that arrive together (one read may take fewer of them).
    Data(Vec<u8>),
    /// The next read would block; `cancel` drops the `read_frame` that was waiting.
    Blocked { cancel: bool },
}

#[derive(Debug, Arbitrary)]
struct Input {
    max: MaxFrame,
    pieces: Vec<Piece>,
}

/// What the reader side shares with the harness.
#[derive(Default)]
struct Progress {
    /// Bytes handed to the reader so far.
    delivered: AtomicUsize,
    /// The last poll of the stream would have blocked: `Some(cancel)`.
    blocked: Mutex<Option<bool>>,
}

impl Progress {
    fn block(&self, cancel: bool) {
        *self.blocked.lock().expect("lock") = Some(cancel);
    }

    fn take_blocked(&self) -> Option<bool> {
        self.blocked.lock().expect("lock").take()
    }
}

/// A stream that returns the input's pieces one by one.
struct Pieces {
    pieces: std::vec::IntoIter<Piece>,
    /// What is left of the current data piece.
    current: Vec<u8>,
    at: usize,
    progress: Arc<Progress>,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.at == this.current.len() {
            match this.pieces.next() {
                Some(Piece::Data(bytes)) => {
                    this.current = bytes;
                    this.at = 0;
                }
                Some(Piece::Blocked { cancel }) => {
                    this.progress.block(cancel);
                    return Poll::Pending;
                }
                // End of stream.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.current.len() - this.at);
        buf.put_slice(&this.current[this.at..this.at + n]);
        this.at += n;
        this.progress.delivered.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: Input| {
    let max = match input.max {
        MaxFrame::Small(n) => u32::from(n),
        MaxFrame::Any(n) => n,
    };
    let stream: Vec<u8> = input
        .pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Data(bytes) => Some(bytes.as_slice()),
            Piece::Blocked { .. } => None,
        })
        .flatten()
        .copied()
        .collect();
    let (want_frames, want_end) = parse_frames(&stream, max);

    let progress = Arc::new(Progress::default());
    let mut reader = FrameReader::new(Pieces {
        pieces: input.pieces.into_iter(),
        current: Vec::new(),
        at: 0,
        progress: Arc::clone(&progress),
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::with_capacity(want_frames.len() + 1);

    LARGEST.with(|largest| largest.set(0));
    TRACKING.with(|on| on.set(true));
    let end = 'reading: loop {
        let mut read = pin!(reader.read_frame(max));
        let result = loop {
            match read.as_mut().poll(&mut cx) {
                Poll::Ready(result) => break result,
                Poll::Pending => {
                    let cancel = progress.take_blocked().expect("blocked by the stream");
                    TRACKING.with(|on| on.set(false));
                    let delivered = progress.delivered.load(Ordering::Relaxed);
                    check_blocked(&stream[..delivered], max, got.len());
                    TRACKING.with(|on| on.set(true));
                    if cancel {
                        continue 'reading;
                    }
                }
            }
        };
        match result {
            Ok(Some(frame)) => got.push(frame),
            other => break other,
        }
    };
    TRACKING.with(|on| on.set(false));
    let largest = LARGEST.with(Cell::get);

    assert_eq!(got.len(), want_frames.len(), "number of frames");
    for (got, want) in got.iter().zip(&want_frames) {
        assert_eq!(&got[..], want.bytes(&stream), "frame at {}", want.start);
    }
    match (end, want_end) {
        (Ok(None), RefEnd::Clean) => {}
        (Err(FrameError::Truncated { have, need }), RefEnd::Partial { have: h, need: n })
            if (have, need) == (h, n) => {}
        (Err(FrameError::TooLarge { len, max }), RefEnd::TooLarge { len: l, max: m })
            if (len, max) == (l, m) => {}
        (Err(FrameError::Empty), RefEnd::Empty) => {}
        (got, want) => panic!("reading ended with {got:?}, the reference with {want:?}"),
    }
    let bound = 8 * stream.len() + 128 * 1024;
    assert!(
        largest <= bound,
        "allocated {largest} bytes at once for a {}-byte stream",
        stream.len()
    );
});

/// The reader waits for more data after `delivered`, having returned `returned` frames: that is
/// right only if the data holds no further complete frame and no bad length prefix.
fn check_blocked(delivered: &[u8], max: u32, returned: usize) {
    let (frames, end) = parse_frames(delivered, max);
    assert_eq!(
        returned,
        frames.len(),
        "waits for data with {} complete frames delivered and {returned} returned",
        frames.len()
    );
    assert!(
        matches!(end, RefEnd::Clean | RefEnd::Partial { .. }),
        "waits for data after a bad length prefix ({end:?})"
    );
}
