//! Stream items in parts: a producer cuts an item longer than [`PART_MAX`] into `StreamPart`
//! frames and a last `StreamItem` frame, so that other frames go out between them, and the
//! consumer puts the item back together (see the protocol's [Streams](crate::protocol#streams)).

use bytes::{Buf, Bytes};

use crate::frame::header_frame;
use crate::frame::KEEP_VIEW_MIN;
use crate::protocol::{Header, LEN_PREFIX, PART_MAX};

/// Cuts the frame of a stream item into parts. `frame` is the item's whole frame (length
/// prefix, `StreamItem` header of `header_len` bytes, body), in pieces; the result is the
/// frames to send in its place, each a group of its own: `StreamPart` frames of [`PART_MAX`]
/// bytes of body, then the `StreamItem` frame with the rest. Each frame is one buffer unless
/// `in_parts` (the transport takes a frame in pieces): then the body's pieces are not copied.
pub(crate) fn cut(
    stream: u64,
    frame: Vec<Bytes>,
    header_len: usize,
    in_parts: bool,
) -> Vec<Vec<Bytes>> {
    let mut pieces: std::collections::VecDeque<Bytes> = frame.into();
    // The prefix and header of the item, kept for its last frame.
    let mut head = Vec::with_capacity(LEN_PREFIX + header_len);
    while head.len() < LEN_PREFIX + header_len {
        let Some(piece) = pieces.front_mut() else {
            break;
        };
        let want = (LEN_PREFIX + header_len - head.len()).min(piece.len());
        head.extend_from_slice(&piece[..want]);
        piece.advance(want);
        if piece.is_empty() {
            pieces.pop_front();
        }
    }
    let body_len: usize = pieces.iter().map(Bytes::len).sum();
    let part_head = header_frame(&Header::StreamPart { stream }).to_vec();
    let mut groups = Vec::new();
    let mut left = body_len;
    while left > 0 {
        let last = left <= PART_MAX;
        let take = left.min(PART_MAX);
        let mut start = if last {
            head.clone()
        } else {
            part_head.clone()
        };
        let len = start.len() - LEN_PREFIX + take;
        let prefix = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
        if let Some(at) = start.get_mut(..LEN_PREFIX) {
            at.copy_from_slice(&prefix);
        }
        let mut group = Vec::new();
        let mut want = take;
        if in_parts {
            group.push(Bytes::from(start));
            while want > 0 {
                let Some(piece) = pieces.front_mut() else {
                    break;
                };
                let n = want.min(piece.len());
                group.push(piece.split_to(n));
                want -= n;
                if piece.is_empty() {
                    pieces.pop_front();
                }
            }
        } else {
            start.reserve(take);
            while want > 0 {
                let Some(piece) = pieces.front_mut() else {
                    break;
                };
                let n = want.min(piece.len());
                start.extend_from_slice(&piece[..n]);
                piece.advance(n);
                want -= n;
                if piece.is_empty() {
                    pieces.pop_front();
                }
            }
            group.push(Bytes::from(start));
        }
        groups.push(group);
        left -= take;
    }
    groups
}

/// Parts at least this long are kept as they arrived (views of the read buffer); shorter ones
/// are copied together, so that a peer sending many tiny parts makes the receiver keep their
/// bytes, not a view (and a read buffer) per part.
const KEEP_MIN: usize = 16 * 1024;

/// The item of a stream that is arriving in parts.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    /// The bodies of the parts that arrived, in order, but for `short`.
    parts: Vec<Bytes>,
    /// Short parts that arrived after those in `parts`, copied one after the other.
    short: Vec<u8>,
    /// The bytes of all the parts.
    len: usize,
}

/// An item in parts would be longer than the receiver's maximum frame.
#[derive(Debug)]
pub(crate) struct TooLarge;

impl Partial {
    /// Whether an item has started arriving in parts.
    pub(crate) fn started(&self) -> bool {
        !self.parts.is_empty() || !self.short.is_empty()
    }

    /// Moves the short parts copied so far to `parts`.
    fn keep_short(&mut self) {
        if !self.short.is_empty() {
            self.parts
                .push(Bytes::from(std::mem::take(&mut self.short)));
        }
    }

    /// A part arrived whose body is `body`; the item's frame would take `header_len` bytes of
    /// header besides.
    ///
    /// # Errors
    ///
    /// [`TooLarge`] if the item's frame would already be longer than `max_frame`.
    pub(crate) fn push(
        &mut self,
        body: Bytes,
        header_len: usize,
        max_frame: u32,
    ) -> Result<(), TooLarge> {
        self.len += body.len();
        if header_len + self.len > max_frame as usize {
            return Err(TooLarge);
        }
        if body.len() >= KEEP_MIN {
            self.keep_short();
            self.parts.push(body);
        } else {
            self.short.extend_from_slice(&body);
        }
        Ok(())
    }

    /// The item's last frame arrived, `frame` with its body from `body_at`: returns the item,
    /// as it came if it did not start in parts, else its parts to put together, which its taker
    /// does (off the task that reads the connection, which a copy of a long item would hold up).
    ///
    /// # Errors
    ///
    /// [`TooLarge`] if the item's frame is longer than `max_frame`.
    pub(crate) fn finish(
        &mut self,
        frame: Bytes,
        body_at: usize,
        max_frame: u32,
    ) -> Result<Finished, TooLarge> {
        if !self.started() {
            return Ok(Finished::Whole { frame, body_at });
        }
        if frame.len() + self.len > max_frame as usize {
            return Err(TooLarge);
        }
        self.keep_short();
        let len = std::mem::take(&mut self.len);
        Ok(Finished::Parted(Box::new(PartedItem {
            parts: std::mem::take(&mut self.parts),
            len,
            last: kept(frame),
            body_at,
        })))
    }
}

/// `frame`, to be kept until its item is taken: copied if it is short, so that it does not keep
/// the whole read buffer it is a view of alive (see [`KEEP_VIEW_MIN`]).
pub(crate) fn kept(frame: Bytes) -> Bytes {
    if frame.len() < KEEP_VIEW_MIN {
        Bytes::copy_from_slice(&frame)
    } else {
        frame
    }
}

/// A stream item that has arrived.
#[derive(Debug)]
pub(crate) enum Finished {
    /// In one frame, its body from `body_at`.
    Whole {
        /// The frame, without its length prefix.
        frame: Bytes,
        /// Where the body starts.
        body_at: usize,
    },
    /// In parts, not put together yet. Boxed: most items are whole, and are moved on through
    /// a value as large as the largest variant.
    Parted(Box<PartedItem>),
}

/// An item that came in parts.
#[derive(Debug)]
pub(crate) struct PartedItem {
    /// The bodies of the parts, in order.
    parts: Vec<Bytes>,
    /// Their bytes.
    len: usize,
    /// The last frame, whose header is the item's.
    last: Bytes,
    /// Where the last frame's body starts.
    body_at: usize,
}

#[cfg(test)]
impl Finished {
    /// The length of the item's frame, as if it had come in one: what its credit counts.
    pub(crate) fn frame_len(&self) -> usize {
        match self {
            Finished::Whole { frame, .. } => frame.len(),
            Finished::Parted(item) => item.len + item.last.len(),
        }
    }

    /// The item's frame, as if it had come in one, and where its body starts.
    pub(crate) fn assemble(self) -> (Bytes, usize) {
        match Assembly::new(self) {
            Ok(assembly) => assembly.finish(),
            Err(whole) => whole,
        }
    }
}

/// An item that came in parts, put together a step at a time, so that its taker can let other
/// tasks run between steps instead of copying a long item at once.
#[derive(Debug)]
pub(crate) struct Assembly {
    /// The parts not copied yet, in order.
    parts: std::collections::VecDeque<Bytes>,
    /// The last frame, whose body is copied last.
    last: Bytes,
    body_at: usize,
    /// The item's length, which `whole` is made to hold at the first step: an item that
    /// waits to be taken holds its parts only.
    len: usize,
    /// The item's header, then what was copied so far; empty until the first step.
    whole: Vec<u8>,
}

impl Assembly {
    /// Starts putting together `item`; an item that came in one frame is given back, as its
    /// frame and where its body starts.
    pub(crate) fn new(item: Finished) -> Result<Self, (Bytes, usize)> {
        match item {
            Finished::Whole { frame, body_at } => Err((frame, body_at)),
            Finished::Parted(item) => {
                let PartedItem {
                    parts,
                    len,
                    last,
                    body_at,
                } = *item;
                Ok(Self {
                    parts: parts.into(),
                    len: len + last.len(),
                    last,
                    body_at,
                    whole: Vec::new(),
                })
            }
        }
    }

    /// Copies up to about `budget` bytes of the parts; returns whether the item is whole.
    pub(crate) fn step(&mut self, budget: usize) -> bool {
        if self.whole.capacity() == 0 {
            self.whole.reserve_exact(self.len);
            self.whole
                .extend_from_slice(self.last.get(..self.body_at).unwrap_or_default());
        }
        let mut left = budget;
        while left > 0 {
            let Some(part) = self.parts.front_mut() else {
                break;
            };
            let n = left.min(part.len());
            self.whole.extend_from_slice(&part[..n]);
            part.advance(n);
            left -= n;
            if part.is_empty() {
                self.parts.pop_front();
            }
        }
        self.parts.is_empty()
    }

    /// The item's frame, as if it had come in one, and where its body starts.
    pub(crate) fn finish(mut self) -> (Bytes, usize) {
        while !self.step(usize::MAX) {}
        let rest = self.last.get(self.body_at..).unwrap_or_default();
        self.whole.extend_from_slice(rest);
        (Bytes::from(self.whole), self.body_at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What keeping an item costs beyond its frame stays near the 64 bytes its credit counts:
    /// the slot of a kept item is no larger than a whole item's.
    #[test]
    fn a_kept_items_slot_is_as_small_as_a_whole_item() {
        assert!(std::mem::size_of::<Finished>() <= 40);
    }

    /// Splits concatenated frames back into (header, body) pairs.
    pub(crate) fn frames_of(bytes: &[u8]) -> Vec<(Header, Bytes)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some((prefix, tail)) = rest.split_first_chunk::<LEN_PREFIX>() {
            let len = u32::from_le_bytes(*prefix) as usize;
            let (frame, tail) = tail.split_at(len);
            let (header, body) = postcard::take_from_bytes::<Header>(frame).expect("header");
            out.push((header, Bytes::copy_from_slice(body)));
            rest = tail;
        }
        assert!(rest.is_empty(), "a frame was cut short");
        out
    }

    fn item_frame(stream: u64, body: &[u8]) -> (Vec<Bytes>, usize) {
        let head = header_frame(&Header::StreamItem { stream });
        let header_len = head.len() - LEN_PREFIX;
        let len = u32::try_from(header_len + body.len()).expect("fits");
        let mut start = head.to_vec();
        start[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
        // The body in uneven pieces, as an encoder that splices buffers leaves it.
        let (a, b) = body.split_at(body.len() / 3);
        (
            vec![
                Bytes::from(start),
                Bytes::copy_from_slice(a),
                Bytes::copy_from_slice(b),
            ],
            header_len,
        )
    }

    #[test]
    fn a_long_item_is_cut_into_parts_and_put_back_together() {
        let body: Vec<u8> = (0..3 * PART_MAX + 123).map(|i| i as u8).collect();
        for in_parts in [true, false] {
            let (frame, header_len) = item_frame(300, &body);
            let groups = cut(300, frame, header_len, in_parts);
            assert_eq!(groups.len(), 4, "three whole parts and the rest");
            if !in_parts {
                assert!(
                    groups.iter().all(|group| group.len() == 1),
                    "one buffer each"
                );
            }
            let frames = frames_of(&groups.concat().concat());
            let kinds: Vec<bool> = frames
                .iter()
                .map(|(h, _)| matches!(h, Header::StreamPart { stream: 300 }))
                .collect();
            assert_eq!(kinds, [true, true, true, false]);
            assert!(matches!(frames[3].0, Header::StreamItem { stream: 300 }));
            assert!(frames.iter().all(|(_, body)| body.len() <= PART_MAX));

            let mut partial = Partial::default();
            for (_, part) in &frames[..3] {
                partial
                    .push(part.clone(), header_len, u32::MAX)
                    .expect("within the maximum");
            }
            assert!(partial.started());
            let last = header_frame(&Header::StreamItem { stream: 300 });
            let mut last = last.slice(LEN_PREFIX..).to_vec();
            last.extend_from_slice(&frames[3].1);
            let finished = partial
                .finish(Bytes::from(last), header_len, u32::MAX)
                .expect("within the maximum");
            assert_eq!(finished.frame_len(), header_len + body.len());
            let (whole, body_at) = finished.assemble();
            assert_eq!(body_at, header_len);
            assert_eq!(whole.len(), header_len + body.len(), "as if sent whole");
            assert_eq!(&whole[header_len..], &body[..]);
            assert!(!partial.started(), "ready for the next item");
        }
    }

    /// Tiny parts are copied together; long ones kept as they came; the item comes back whole.
    #[test]
    fn tiny_parts_are_copied_together_and_long_ones_kept() {
        let mut partial = Partial::default();
        let long = Bytes::from(vec![2u8; KEEP_MIN]);
        let mut expected = vec![1u8; 1000];
        for _ in 0..1000 {
            partial
                .push(Bytes::from_static(&[1]), 2, u32::MAX)
                .expect("within the maximum");
        }
        partial
            .push(long.clone(), 2, u32::MAX)
            .expect("within the maximum");
        expected.extend_from_slice(&long);
        partial
            .push(Bytes::from_static(&[3, 3]), 2, u32::MAX)
            .expect("within the maximum");
        expected.extend_from_slice(&[3, 3]);
        assert_eq!(
            partial.parts.len(),
            2,
            "1000 tiny parts in one buffer, the long one"
        );
        assert_eq!(partial.parts[1].as_ptr(), long.as_ptr(), "not copied");
        let (whole, body_at) = partial
            .finish(Bytes::from_static(&[9, 9, 4]), 2, u32::MAX)
            .expect("within the maximum")
            .assemble();
        expected.push(4);
        assert_eq!(body_at, 2);
        assert_eq!(&whole[2..], &expected[..]);
        assert!(!partial.started());
    }

    #[test]
    fn an_assembly_in_steps_gives_the_item_as_if_whole() {
        let mut partial = Partial::default();
        for part in [vec![1u8; KEEP_MIN], vec![2u8; KEEP_MIN + 5]] {
            partial
                .push(Bytes::from(part), 2, u32::MAX)
                .expect("within the maximum");
        }
        let item = partial
            .finish(Bytes::from_static(&[9, 9, 3, 3]), 2, u32::MAX)
            .expect("within the maximum");
        let Ok(mut assembly) = Assembly::new(item) else {
            panic!("it came in parts");
        };
        let mut steps = 1;
        while !assembly.step(10_000) {
            steps += 1;
        }
        assert_eq!(steps, 4, "32,773 bytes, 10,000 a step");
        let (whole, body_at) = assembly.finish();
        assert_eq!(body_at, 2);
        assert_eq!(&whole[..2], &[9, 9]);
        assert_eq!(whole.len(), 2 + 2 * KEEP_MIN + 5 + 2);
        assert!(whole[2..2 + KEEP_MIN].iter().all(|&b| b == 1));
        assert!(whole[2 + KEEP_MIN..whole.len() - 2].iter().all(|&b| b == 2));
        assert_eq!(&whole[whole.len() - 2..], &[3, 3]);
    }

    #[test]
    fn an_item_in_parts_longer_than_the_maximum_is_refused() {
        let mut partial = Partial::default();
        partial
            .push(Bytes::from(vec![0; 100]), 2, 150)
            .expect("102 bytes so far");
        assert!(partial.push(Bytes::from(vec![0; 100]), 2, 150).is_err());
        let mut partial = Partial::default();
        partial
            .push(Bytes::from(vec![0; 100]), 2, 150)
            .expect("102 bytes so far");
        let last = Bytes::from(vec![7; 60]);
        assert!(partial.finish(last, 2, 150).is_err(), "160 in all");
    }
}
