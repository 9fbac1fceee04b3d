//! The items of a stream from the peer that arrived and were not taken yet, in order: a
//! client's stream from its server, and a server's upload from its client.
//!
//! Small items are copied, one after the other, into a buffer of their own: the task reading
//! the connection copies a few bytes on its own core instead of handing the consumer a view of
//! its read buffer, whose shared count both cores would then update for every item, and what
//! they take stays within their credit (an allocation of its own for each would take more than
//! an item of a few bytes counts). Larger items keep their frame, which is not copied.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::KEEP_VIEW_MIN;
use crate::stream::parts::{Assembly, Finished};

/// Frames up to this long are copied; longer ones are kept as they arrived (a view of a
/// shorter frame could keep much more than its length of the read buffer alive: see
/// [`KEEP_VIEW_MIN`]).
pub(crate) const COPY_MAX: usize = KEEP_VIEW_MIN;

/// The size of each buffer of copied items: what they hold is bounded by the stream's credit,
/// and what they leave unused by one buffer per stream.
const BUFFER: usize = 16 * 1024;

/// Arrived items, oldest first.
#[derive(Default)]
pub(crate) struct Arrived {
    runs: VecDeque<Run>,
    /// The frame of the item taken last, if it was not copied: its body is borrowed.
    last: Option<Kept>,
}

/// Items of one kind that arrived one after the other.
enum Run {
    /// Small items, each as its frame's length and its body's length (`u32`, little-endian),
    /// then its body; `at` is where the next one starts.
    Copied { bytes: Vec<u8>, at: usize },
    /// One item, as its frame.
    Frame(Kept),
    /// One item that came in parts, put together by the consumer (see
    /// [`Arrived::assemble_some`]), not by the task that reads the connection.
    Parted(Assembly),
}

/// An item kept as the frame it arrived in.
struct Kept {
    frame: Bytes,
    body_at: usize,
}

impl Kept {
    fn body(&self) -> &[u8] {
        self.frame.get(self.body_at..).unwrap_or_default()
    }
}

/// An item taken out of [`Arrived`].
pub(crate) struct Item<'a> {
    /// The length of the frame the item arrived in, which its credit is counted from.
    pub(crate) frame_len: usize,
    /// The encoded item.
    pub(crate) body: &'a [u8],
    /// The frame, for an item that was not copied: what large byte buffers may share.
    pub(crate) frame: Option<&'a Bytes>,
}

impl Arrived {
    /// Whether no item is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.iter().all(Run::used_up)
    }

    /// Lets go of what the items taken so far still hold (the frame of the last one, used-up
    /// buffers): before this is handed to the side that adds items, which would keep them.
    pub(crate) fn let_go(&mut self) {
        self.last = None;
        while self.runs.front().is_some_and(Run::used_up) {
            self.runs.pop_front();
        }
    }

    /// Adds the item that arrived in `frame`, whose body starts at `body_at`: copied if the
    /// frame is at most [`COPY_MAX`] bytes long, else kept.
    pub(crate) fn push(&mut self, frame: Bytes, body_at: usize) {
        if frame.len() > COPY_MAX {
            self.push_frame(frame, body_at);
        } else {
            self.push_copy(&frame, body_at);
        }
    }

    /// Adds a copy of the item that arrived in `frame`, whose body starts at `body_at`.
    pub(crate) fn push_copy(&mut self, frame: &[u8], body_at: usize) {
        let body = frame.get(body_at..).unwrap_or_default();
        let lens = (u32::try_from(frame.len()), u32::try_from(body.len()));
        let (Ok(frame_len), Ok(body_len)) = lens else {
            return self.push_frame(Bytes::copy_from_slice(frame), body_at);
        };
        // A full buffer is not grown (which would copy it and leave up to half of it unused):
        // the item starts a new one, and the full one gives back the end it leaves unused (up
        // to half of it, for items a little over half a buffer long), which its allocation
        // usually does in place.
        let need = 8 + body.len();
        let room = match self.runs.back_mut() {
            Some(Run::Copied { bytes, .. }) if bytes.capacity() - bytes.len() >= need => true,
            Some(Run::Copied { bytes, .. }) => {
                bytes.shrink_to_fit();
                false
            }
            _ => false,
        };
        if !room {
            self.runs.push_back(Run::Copied {
                bytes: Vec::with_capacity(BUFFER.max(need)),
                at: 0,
            });
        }
        let Some(Run::Copied { bytes, .. }) = self.runs.back_mut() else {
            return;
        };
        let mut lens = [0u8; 8];
        let (frame_part, body_part) = lens.split_at_mut(4);
        frame_part.copy_from_slice(&frame_len.to_le_bytes());
        body_part.copy_from_slice(&body_len.to_le_bytes());
        bytes.extend_from_slice(&lens);
        bytes.extend_from_slice(body);
    }

    /// Adds an item that arrived, in one frame or in parts.
    pub(crate) fn push_finished(&mut self, item: Finished) {
        match Assembly::new(item) {
            Err((frame, body_at)) => self.push(frame, body_at),
            Ok(assembly) => self.runs.push_back(Run::Parted(assembly)),
        }
    }

    /// Puts together about `budget` more bytes of the next item if it came in parts; returns
    /// whether some of it is still to do. A taker that yields between steps lets other tasks
    /// run on its thread, where copying a long item at once would hold it.
    pub(crate) fn assemble_some(&mut self, budget: usize) -> bool {
        let next = self.runs.iter_mut().find(|run| !run.used_up());
        match next {
            Some(Run::Parted(assembly)) => !assembly.step(budget),
            _ => false,
        }
    }

    fn push_frame(&mut self, frame: Bytes, body_at: usize) {
        self.runs.push_back(Run::Frame(Kept { frame, body_at }));
    }

    /// Takes the oldest item; it stays readable until the next call.
    pub(crate) fn pop(&mut self) -> Option<Item<'_>> {
        // What the last item borrowed goes now: a run of copied items once it is used up, the
        // frame of an item that was not copied.
        self.let_go();
        if matches!(self.runs.front(), Some(Run::Frame(_) | Run::Parted(_))) {
            let kept = match self.runs.pop_front() {
                Some(Run::Frame(kept)) => kept,
                Some(Run::Parted(assembly)) => {
                    let (frame, body_at) = assembly.finish();
                    Kept { frame, body_at }
                }
                _ => return None,
            };
            let kept = self.last.insert(kept);
            return Some(Item {
                frame_len: kept.frame.len(),
                body: kept.body(),
                frame: Some(&kept.frame),
            });
        }
        let Some(Run::Copied { bytes, at }) = self.runs.front_mut() else {
            return None;
        };
        let rest = bytes.get(*at..)?;
        let (frame_len, rest) = split_u32(rest)?;
        let (body_len, rest) = split_u32(rest)?;
        let body = rest.get(..body_len)?;
        *at += 8 + body_len;
        Some(Item {
            frame_len,
            body,
            frame: None,
        })
    }
}

#[cfg(test)]
impl Arrived {
    /// The bytes the items hold in memory: the buffers of copied items (their capacity), and
    /// the frames of the others.
    pub(crate) fn held(&self) -> usize {
        self.runs
            .iter()
            .map(|run| match run {
                Run::Copied { bytes, .. } => bytes.capacity(),
                Run::Frame(kept) => kept.frame.len(),
                Run::Parted(_) => 0,
            })
            .sum()
    }
}

impl Run {
    fn used_up(&self) -> bool {
        match self {
            Run::Copied { bytes, at } => *at >= bytes.len(),
            Run::Frame(_) | Run::Parted(_) => false,
        }
    }
}

/// A little-endian `u32` at the start of `bytes`, as a length, and what follows it.
fn split_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*len)).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `header_len` header bytes, then `body`.
    fn frame(header_len: usize, body: &[u8]) -> Bytes {
        let mut frame = vec![0xAB; header_len];
        frame.extend_from_slice(body);
        Bytes::from(frame)
    }

    /// Small and large items, mixed, come out in the order they went in, each with its own
    /// body and frame length; only the large ones keep their frame.
    #[test]
    fn items_keep_their_order_copied_or_not() {
        let bodies: Vec<Vec<u8>> = [3, COPY_MAX, 0, COPY_MAX + 1, 7, 5000, 1]
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![u8::try_from(i).unwrap_or(0); len])
            .collect();
        let mut arrived = Arrived::default();
        assert!(arrived.is_empty());
        for body in &bodies {
            arrived.push(frame(2, body), 2);
        }
        assert!(!arrived.is_empty());
        for body in &bodies {
            let item = arrived.pop().expect("an item");
            assert_eq!(item.body, &body[..]);
            assert_eq!(item.frame_len, body.len() + 2);
            assert_eq!(item.frame.is_some(), body.len() + 2 > COPY_MAX);
        }
        assert!(arrived.pop().is_none());
        assert!(arrived.is_empty());
    }

    /// An item that came in parts comes out in its place, put together.
    #[test]
    fn items_in_parts_are_put_together_when_taken() {
        let mut arrived = Arrived::default();
        arrived.push(frame(2, b"before"), 2);
        let mut partial = crate::stream::parts::Partial::default();
        for part in [&b"lo"[..], b"ng "] {
            partial
                .push(Bytes::copy_from_slice(part), 2, u32::MAX)
                .expect("within the maximum");
        }
        let item = partial
            .finish(frame(2, b"item"), 2, u32::MAX)
            .expect("within the maximum");
        arrived.push_finished(item);
        arrived.push(frame(2, b"after"), 2);
        let mut taken = Vec::new();
        while let Some(item) = arrived.pop() {
            taken.push((item.body.to_vec(), item.frame_len));
        }
        assert_eq!(
            taken,
            [
                (b"before".to_vec(), 8),
                (b"long item".to_vec(), 11),
                (b"after".to_vec(), 7)
            ]
        );
    }

    /// A full buffer of copied items is followed by a new one, never grown, and keeps only
    /// what it holds: what they leave unused is bounded by the last buffer.
    #[test]
    fn buffers_of_copied_items_are_never_grown() {
        let mut arrived = Arrived::default();
        for i in 0..1000u32 {
            arrived.push(frame(2, &i.to_le_bytes().repeat(25)), 2);
        }
        let capacities: Vec<usize> = arrived
            .runs
            .iter()
            .map(|run| match run {
                Run::Copied { bytes, .. } => bytes.capacity(),
                Run::Frame(_) | Run::Parted(_) => 0,
            })
            .collect();
        assert!(capacities.len() > 1, "{capacities:?}");
        let (last, full) = capacities.split_last().expect("buffers");
        assert_eq!(*last, BUFFER);
        assert!(
            full.iter().all(|&c| c <= BUFFER && BUFFER - c < 8 + 100),
            "{capacities:?}"
        );
        for i in 0..1000u32 {
            let item = arrived.pop().expect("an item");
            assert_eq!(item.body, &i.to_le_bytes().repeat(25)[..]);
        }
    }

    /// Items a little over half a buffer long, one to a buffer, hold little more than their
    /// credit: each full buffer gives back the end it leaves unused (it held twice as much).
    #[test]
    fn items_of_half_a_buffer_hold_about_their_length() {
        let mut arrived = Arrived::default();
        let body = vec![7u8; BUFFER / 2 - 6];
        let item = frame(2, &body);
        assert!(item.len() <= COPY_MAX);
        let mut credit = 0;
        for _ in 0..100 {
            arrived.push(item.clone(), 2);
            credit += item.len() + crate::protocol::STREAM_ITEM_OVERHEAD as usize;
        }
        assert!(
            arrived.held() <= credit + BUFFER,
            "{} bytes held for {credit} bytes of credit",
            arrived.held()
        );
        for _ in 0..100 {
            assert_eq!(arrived.pop().map(|item| item.body.len()), Some(body.len()));
        }
    }

    /// Items pushed after some were taken follow them.
    #[test]
    fn items_pushed_while_taking_follow() {
        let mut arrived = Arrived::default();
        arrived.push(frame(1, b"one"), 1);
        assert_eq!(
            arrived.pop().map(|item| item.body.to_vec()),
            Some(b"one".to_vec())
        );
        arrived.push(frame(1, b"two"), 1);
        arrived.push(frame(1, &[9; 2000]), 1);
        assert_eq!(
            arrived.pop().map(|item| item.body.to_vec()),
            Some(b"two".to_vec())
        );
        assert_eq!(arrived.pop().map(|item| item.body.len()), Some(2000));
        assert!(arrived.pop().is_none());
    }
}
