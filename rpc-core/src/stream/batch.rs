//! Stream items encoded straight into the frames of one write. Where the transport takes frames
//! in parts (a byte stream), small items share one buffer and large byte buffers
//! ([`crate::ByteBuf`]) go out as they are; else each frame is a buffer of its own.

use bytes::Bytes;
use serde::Serialize;

use crate::frame::{checked_len, encode_into, encode_spliced, EncodeError, Encoded};
use crate::protocol::{WireError, LEN_PREFIX, PART_MAX};
use crate::stream::parts;
use crate::writer::{BULK_PER_WRITE, MAX_BATCH};

/// The item frames of one stream waiting to be written together.
pub(crate) struct Batch {
    /// The stream's id, for the parts of long items.
    stream: u64,
    /// Room for the length prefix, then the stream item header every frame starts with.
    start: Vec<u8>,
    max_frame: u32,
    in_parts: bool,
    /// Items longer than [`PART_MAX`] are cut into parts.
    cut_long: bool,
    /// Whole frames not yet cut into `frames`, one after the other.
    open: Vec<u8>,
    /// Groups of whole frames ready, in order, before those in `frames`; each of about
    /// [`BULK_PER_WRITE`] bytes or [`MAX_BATCH`] buffers, so that a write of the writer task
    /// takes few.
    groups: Vec<Vec<Bytes>>,
    /// Frames (or their parts) ready, in order, before those in `open`.
    frames: Vec<Bytes>,
    /// Bytes of the group under way (in `frames` and `open` since the last group was taken).
    group_len: usize,
    /// Bytes in `frames` and `open`.
    len: usize,
    /// The length of `open` up to its last whole frame.
    whole: usize,
}

impl Batch {
    /// An empty batch of items of stream `stream`, whose frames start with `header`.
    pub(crate) fn new(stream: u64, header: &[u8], max_frame: u32, in_parts: bool) -> Self {
        Self {
            stream,
            cut_long: true,
            start: [&[0; LEN_PREFIX][..], header].concat(),
            max_frame,
            in_parts,
            open: Vec::new(),
            groups: Vec::new(),
            frames: Vec::new(),
            group_len: 0,
            len: 0,
            whole: 0,
        }
    }

    /// Whether items longer than [`PART_MAX`] pushed from now on go in parts (the default), or
    /// whole: parts let other frames go out between them, and cost the receiver a copy.
    pub(crate) fn cut_long_items(&mut self, cut: bool) {
        self.cut_long = cut;
    }

    /// Bytes in the batch, length prefixes included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends the frame of `item`; returns its length as its prefix gives it. An item that
    /// fails to encode leaves the batch as it was.
    ///
    /// # Errors
    ///
    /// [`WireError::ResultTooLarge`] if the frame would be longer than the maximum,
    /// [`WireError::EncodeFailed`] if the item does not encode.
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<u32, WireError> {
        let start = self.open.len();
        let encoded = self.encode(item, start);
        match encoded {
            Ok((len, spliced)) => {
                let header_len = self.start.len() - LEN_PREFIX;
                if self.cut_long && len as usize > header_len + PART_MAX {
                    self.push_in_parts(start, spliced, header_len);
                    self.len += LEN_PREFIX + len as usize;
                    return Ok(len);
                }
                if !spliced.is_empty() {
                    // The frame goes out in parts: what came before it is cut off first.
                    let frame = self.open.split_off(start);
                    self.cut();
                    let spliced = spliced.into_iter().map(|(at, b)| (at - start, b));
                    Encoded::assemble(Bytes::from(frame), spliced.collect())
                        .push_into(&mut self.frames);
                }
                self.len += LEN_PREFIX + len as usize;
                self.group_len += LEN_PREFIX + len as usize;
                self.whole = self.open.len();
                if !self.in_parts {
                    // The transport takes each frame as one buffer (a message).
                    self.cut();
                }
                // A group is written in one go, within the writer's limits: in bytes, and in
                // buffers (on a transport of messages, a write per buffer).
                if self.group_len >= BULK_PER_WRITE || self.frames.len() >= MAX_BATCH {
                    self.end_group();
                }
                Ok(len)
            }
            Err(error) => {
                self.open.truncate(start);
                Err(match error {
                    EncodeError::TooLarge { len, max } => WireError::ResultTooLarge { len, max },
                    EncodeError::Postcard(_) => WireError::EncodeFailed,
                })
            }
        }
    }

    /// Cuts the frame just encoded at `start` in `open` (with `spliced` buffers left out of it)
    /// into parts, each a group of its own after the frames before it.
    fn push_in_parts(&mut self, start: usize, spliced: Vec<(usize, Bytes)>, header_len: usize) {
        let frame = if start == 0 {
            std::mem::take(&mut self.open)
        } else {
            self.open.split_off(start)
        };
        self.end_group();
        let mut pieces = Vec::new();
        let spliced = spliced.into_iter().map(|(at, b)| (at - start, b));
        Encoded::assemble(Bytes::from(frame), spliced.collect()).push_into(&mut pieces);
        self.groups
            .extend(parts::cut(self.stream, pieces, header_len, self.in_parts));
    }

    /// Encodes `item`'s frame at the end of `open` (at `start`); returns the frame's length and
    /// the large buffers left out of it, with their places in `open`.
    fn encode<T: Serialize + ?Sized>(
        &mut self,
        item: &T,
        start: usize,
    ) -> Result<(u32, Vec<(usize, Bytes)>), EncodeError> {
        self.open.extend_from_slice(&self.start);
        let mut spliced = Vec::new();
        if self.in_parts {
            encode_spliced(item, &mut self.open, &mut spliced)?;
        } else {
            encode_into(item, &mut self.open)?;
        }
        let written = self.open.len() - start - LEN_PREFIX;
        let spliced_len: usize = spliced.iter().map(|(_, b): &(usize, Bytes)| b.len()).sum();
        let len = checked_len((written + spliced_len) as u64, self.max_frame)?;
        if let Some(prefix) = self.open.get_mut(start..start + LEN_PREFIX) {
            prefix.copy_from_slice(&len.to_le_bytes());
        }
        Ok((len, spliced))
    }

    /// Moves what is in `open` to `frames`.
    fn cut(&mut self) {
        if !self.open.is_empty() {
            self.frames
                .push(Bytes::from(std::mem::take(&mut self.open)));
        }
        self.whole = 0;
    }

    /// Ends the group of frames under way.
    fn end_group(&mut self) {
        self.cut();
        if !self.frames.is_empty() {
            self.groups.push(std::mem::take(&mut self.frames));
        }
        self.group_len = 0;
    }

    /// Drops the part of a frame that an encoding left behind when it panicked.
    pub(crate) fn discard_partial(&mut self) {
        self.open.truncate(self.whole);
    }

    /// Takes every frame of the batch, in order, in groups of whole frames, leaving it empty.
    pub(crate) fn take(&mut self) -> Vec<Vec<Bytes>> {
        self.end_group();
        self.len = 0;
        std::mem::take(&mut self.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Header;
    use crate::stream::parts::tests::frames_of;
    use crate::ByteBuf;

    fn header() -> Vec<u8> {
        postcard::to_stdvec(&Header::StreamItem { stream: 7 }).expect("header")
    }

    #[test]
    fn small_items_share_one_buffer_and_decode_as_sent() {
        let mut batch = Batch::new(7, &header(), u32::MAX, true);
        let mut lens = Vec::new();
        for n in [1u32, 300, 70_000] {
            lens.push(batch.push(&n).expect("encodes"));
        }
        let frames = batch.take().concat();
        assert_eq!(frames.len(), 1, "one buffer");
        let decoded = frames_of(&frames.concat());
        let items: Vec<u32> = decoded
            .iter()
            .map(|(_, body)| postcard::from_bytes(body).expect("item"))
            .collect();
        assert_eq!(items, [1, 300, 70_000]);
        assert!(decoded
            .iter()
            .all(|(h, _)| matches!(h, Header::StreamItem { stream: 7 })));
        assert_eq!(lens, [3, 4, 5], "header 2 bytes, then the varint");
        assert_eq!(batch.len(), 0);
    }

    /// A long item goes in parts, each a group of its own, and comes back whole.
    fn long_item_in_parts(in_parts: bool) {
        let large = ByteBuf::from((0..(1u32 << 20)).map(|i| i as u8).collect::<Vec<u8>>());
        let mut batch = Batch::new(7, &header(), u32::MAX, in_parts);
        batch.push(&1u32).expect("small");
        let len = batch.push(&large).expect("large");
        batch.push(&2u32).expect("small");
        let groups = batch.take();
        // The small item, 16 parts of 64 KiB, the rest of the item, the small item.
        assert_eq!(groups.len(), 19);
        if in_parts {
            let range = large.as_ptr() as usize..large.as_ptr() as usize + large.len();
            let viewed = groups
                .concat()
                .iter()
                .filter(|b| range.contains(&(b.as_ptr() as usize)))
                .count();
            // The body is the buffer's length (3 bytes) and the buffer: each part and the last
            // frame carry a view of it.
            assert_eq!(viewed, 17, "the buffer's bytes are not copied");
        } else {
            for frame in groups.concat() {
                assert_eq!(frames_of(&frame).len(), 1, "one whole frame per buffer");
            }
        }
        let decoded = frames_of(&groups.concat().concat());
        assert_eq!(decoded.len(), 19);
        let mut partial = crate::stream::parts::Partial::default();
        for (header, body) in &decoded[1..17] {
            assert_eq!(header, &Header::StreamPart { stream: 7 });
            assert!(body.len() <= crate::protocol::PART_MAX);
            partial
                .push(Bytes::copy_from_slice(body), 2, u32::MAX)
                .expect("within the maximum");
        }
        let mut last = postcard::to_stdvec(&Header::StreamItem { stream: 7 }).expect("header");
        last.extend_from_slice(&decoded[17].1);
        let finished = partial
            .finish(Bytes::from(last), 2, u32::MAX)
            .expect("whole");
        assert_eq!(finished.frame_len(), len as usize, "what the credit counts");
        let (whole, _) = finished.assemble();
        assert_eq!(whole.len(), len as usize, "as if sent whole");
        let back: ByteBuf = postcard::from_bytes(&whole[2..]).expect("buffer");
        assert_eq!(back, large);
        let small: u32 = postcard::from_bytes(&decoded[18].1).expect("small");
        assert_eq!(small, 2);
    }

    #[test]
    fn a_long_item_goes_in_parts_not_copied_on_a_byte_stream() {
        long_item_in_parts(true);
    }

    #[test]
    fn a_long_item_goes_in_parts_of_one_buffer_each_for_a_message_transport() {
        long_item_in_parts(false);
    }

    /// On a transport of messages a group holds at most as many frames as the writer writes
    /// in one go: each is a write of its own there.
    #[test]
    fn groups_of_small_frames_are_bounded_in_count_for_a_message_transport() {
        let mut batch = Batch::new(7, &header(), u32::MAX, false);
        for n in 0..1000u32 {
            batch.push(&n).expect("small");
        }
        let groups = batch.take();
        assert!(groups.iter().all(|group| group.len() <= MAX_BATCH));
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 1000);
        let items: Vec<u32> = frames_of(&groups.concat().concat())
            .iter()
            .map(|(_, body)| postcard::from_bytes(body).expect("item"))
            .collect();
        assert_eq!(items, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn an_item_over_the_maximum_leaves_the_batch_as_it_was() {
        let mut batch = Batch::new(7, &header(), 16, false);
        batch.push(&1u32).expect("small");
        let too_large = vec![0u8; 64];
        assert!(matches!(
            batch.push(&too_large),
            Err(WireError::ResultTooLarge { max: 16, .. })
        ));
        batch.push(&2u32).expect("small");
        let decoded = frames_of(&batch.take().concat().concat());
        let items: Vec<u32> = decoded
            .iter()
            .map(|(_, body)| postcard::from_bytes(body).expect("item"))
            .collect();
        assert_eq!(items, [1, 2]);
    }
}
