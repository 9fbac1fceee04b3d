//! The boundary to the transports: whole frames in, whole frames out.
//!
//! A frame is `| len: u32 LE | payload |` (see [`crate::protocol`]). A transport is a
//! [`FrameRead`] and a [`FrameWrite`] and nothing else: the engines tell the reader the largest
//! frame they accept on every read (the transport checks it before setting memory aside), and
//! both halves report failures as one error type, [`FrameError`].
//!
//! For byte streams, [`FrameReader`] turns any [`AsyncRead`](tokio::io::AsyncRead) into whole
//! payloads: it keeps partial frames until they are complete, splits reads that hold several
//! frames, checks `len` against the maximum *before* setting any memory aside, and never
//! reserves the claimed length up front (a peer that claims the maximum and stalls costs one
//! read buffer, not the maximum; a large frame's buffer grows with the data received). Between
//! frames it holds no buffer, so an idle connection costs none. [`FrameWriter`] writes batches
//! of encoded frames, coalesced into as few writes as the transport allows, and on byte streams
//! can write without waiting ([`FrameWrite::try_write_now`]).

pub(crate) mod encode;
pub(crate) mod header;
mod reader;
mod writer;

use std::future::Future;
use std::io;

use bytes::Bytes;

pub(crate) use encode::{
    checked_len, encode_frame, encode_into, encode_spliced, header_frame, EncodeError, Encoded,
    FrameBody,
};
pub(crate) use header::{decode_header, encode_small};
pub use reader::FrameReader;
pub(crate) use reader::KEEP_VIEW_MIN;
pub use writer::FrameWriter;

use crate::protocol::LEN_PREFIX;

/// Why a transport could not read or write a frame. After one the transport is unusable.
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
    /// Reading or writing failed.
    #[error("I/O failed: {0}")]
    Io(io::ErrorKind),
    /// A frame whose first bytes arrived did not complete within the frame timeout
    /// ([`FrameRead::set_frame_timeout`]).
    #[error("a frame took longer than {0:?} to arrive")]
    Stalled(std::time::Duration),
    /// The process on the other end exited (a child process serving over its stdio); no
    /// frame can follow, and none can be sent.
    #[error("peer process exited ({0})")]
    PeerExited(std::process::ExitStatus),
}

impl From<io::Error> for FrameError {
    fn from(error: io::Error) -> Self {
        FrameError::Io(error.kind())
    }
}

impl From<io::ErrorKind> for FrameError {
    fn from(kind: io::ErrorKind) -> Self {
        FrameError::Io(kind)
    }
}

/// Reads whole frames from a transport.
pub trait FrameRead: Send + 'static {
    /// Reads the next frame's payload (without its length prefix); `Ok(None)` when the peer
    /// closed the stream cleanly between frames. A frame whose length exceeds `max_frame` is
    /// refused before any memory is set aside for it ([`check_len`] does the check).
    ///
    /// Cancel-safe: if the future is dropped, no data is lost and the next call goes on.
    ///
    /// # Errors
    ///
    /// A [`FrameError`]; after one the transport is unusable.
    fn read_frame(
        &mut self,
        max_frame: u32,
    ) -> impl Future<Output = Result<Option<Bytes>, FrameError>> + Send;

    /// Offers the next frame to `take` if it is already whole in this reader's buffer, without
    /// reading from the transport; a frame `take` says yes to is consumed (`take` has kept what
    /// it needs of it). Returns whether one was. For a reader that handles frames that arrived
    /// together in one go. The default keeps no buffer: `Ok(false)`.
    ///
    /// # Errors
    ///
    /// As [`read_frame`](FrameRead::read_frame), for a frame in the buffer over `max_frame`.
    fn consume_buffered(
        &mut self,
        max_frame: u32,
        take: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, FrameError> {
        let _ = (max_frame, take);
        Ok(false)
    }

    /// Right after a read refused a frame as too long ([`FrameError::TooLarge`]): the first
    /// bytes of that frame that this reader holds (its length prefix first, then as much of the
    /// payload as has arrived, possibly none), without reading from the transport. The client's
    /// handshake looks at them to tell a welcome too long for it from a peer that does not speak
    /// the protocol. The default holds none.
    fn refused_frame_start(&self) -> &[u8] {
        &[]
    }

    /// Whether this reader holds no byte of a frame it has yet to return: the next frame, if
    /// any, must come from the transport. The server sends the replies it has gathered as soon
    /// as its reader holds nothing more, rather than trying the transport once more first. The
    /// default, `false`, makes it try the transport.
    fn holds_nothing(&self) -> bool {
        false
    }

    /// Sets how long a frame may take to arrive once its first bytes have; a frame that takes
    /// longer fails the read with [`FrameError::Stalled`]. The server engine sets it once, before
    /// its first read. Transports that deliver whole messages ignore it (the default).
    fn set_frame_timeout(&mut self, timeout: std::time::Duration) {
        let _ = timeout;
    }

    /// The engine stops reading for a while (at its in-flight limit, or while replies wait to
    /// be written): the time until its next read does not count against the frame timeout of
    /// a frame that was arriving. Called again while the pause lasts; the default does nothing.
    fn pause(&mut self) {}

    /// Completes when the peer has closed its end, without reading anything: the engine waits
    /// on it while it does not read (at its in-flight limit, or while replies wait to be
    /// written), so that a peer that leaves is noticed at once and the handlers of its calls are
    /// dropped. Data that arrives meanwhile is left for [`read_frame`](FrameRead::read_frame):
    /// a server still reads it, for the one-way calls the peer sent before it left.
    ///
    /// The default never completes: such a transport's departed peer is noticed when reading
    /// resumes, or when a reply cannot be written.
    fn closed(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Writes encoded frames (each with its length prefix) to a transport.
pub trait FrameWrite: Send + 'static {
    /// Writes the frames in order. A byte stream may coalesce them into one write; a message
    /// transport writes each frame as one message.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] (usually [`FrameError::Io`]); after one the transport is unusable.
    fn write_frames(
        &mut self,
        frames: &[Bytes],
    ) -> impl Future<Output = Result<(), FrameError>> + Send;

    /// Writes the frames now if the transport takes them without waiting. A connection whose
    /// writer is idle calls it from the task that sends, to save a hop to the writer task.
    ///
    /// It must not wait and must leave the transport in a state where
    /// [`write_frames`](FrameWrite::write_frames) goes on correctly. The default takes nothing
    /// ([`TryWrite::WouldBlock`]): every frame then goes through `write_frames`.
    ///
    /// # Errors
    ///
    /// A [`FrameError`]; after one the transport is unusable.
    fn try_write_now(&mut self, frames: &[Bytes]) -> Result<TryWrite, FrameError> {
        let _ = frames;
        Ok(TryWrite::WouldBlock)
    }

    /// Whether a frame may be written in parts: several consecutive entries of `frames` that
    /// make up one frame. True for byte streams, where the bytes simply follow each other; a
    /// message transport, which writes each entry as one message, must say `false` (the
    /// default), and gets every frame whole.
    fn accepts_parts(&self) -> bool {
        false
    }

    /// Flushes and closes the sending direction, so the peer reads end-of-stream.
    ///
    /// # Errors
    ///
    /// The [`FrameError`] of the flush or shutdown.
    fn close(&mut self) -> impl Future<Output = Result<(), FrameError>> + Send;
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

/// Checks a frame's length prefix against the maximum; returns the payload's length.
///
/// Every transport reads the prefix through this one check, so that all refuse the same
/// frames with the same errors.
///
/// # Errors
///
/// [`FrameError::TooLarge`] above `max_frame`, [`FrameError::Empty`] for a length of zero.
pub fn check_len(prefix: [u8; LEN_PREFIX], max_frame: u32) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix);
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    // `len` <= u32::MAX fits usize on every supported target (32 and 64 bits).
    Ok(len as usize)
}

/// What an engine's reading branch saw.
pub(crate) enum Received {
    /// A frame, the end of the stream, or why reading failed.
    Frame(Result<Option<Bytes>, FrameError>),
    /// The peer closed its end while the engine was not reading.
    Closed,
}

/// Reads the next frame if `reading`, else waits for the peer to close its end
/// ([`FrameRead::closed`]).
pub(crate) async fn next_incoming<R: FrameRead>(
    reader: &mut R,
    reading: bool,
    max_frame: u32,
) -> Received {
    if reading {
        Received::Frame(reader.read_frame(max_frame).await)
    } else {
        reader.pause();
        reader.closed().await;
        Received::Closed
    }
}
