//! Stream items encoded straight into the frames of one write. Where the transport takes frames
//! in parts (a byte stream), small items share one buffer and large byte buffers
//! ([`crate::ByteBuf`]) go out as they are; else each frame is a buffer of its own.

use bytes::Bytes;
use serde::Serialize;

use crate::frame::{checked_len, encode_into, encode_spliced, EncodeError, Encoded};
use crate::protocol::{WireError, LEN_PREFIX};

/// The item frames of one stream waiting to be written together.
pub(crate) struct Batch {
    /// Room for the length prefix, then the stream item header every frame starts with.
    start: Vec<u8>,
    max_frame: u32,
    in_parts: bool,
    /// Whole frames not yet cut into `frames`, one after the other.
    open: Vec<u8>,
    /// Frames (or their parts) ready, in order, before those in `open`.
    frames: Vec<Bytes>,
    /// Bytes in `frames` and `open`.
    len: usize,
    /// The length of `open` up to its last whole frame.
    whole: usize,
}

impl Batch {
    /// An empty batch of items whose frames start with `header`.
    pub(crate) fn new(header: &[u8], max_frame: u32, in_parts: bool) -> Self {
        Self {
            start: [&[0; LEN_PREFIX][..], header].concat(),
            max_frame,
            in_parts,
            open: Vec::new(),
            frames: Vec::new(),
            len: 0,
            whole: 0,
        }
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
                if !spliced.is_empty() {
                    // The frame goes out in parts: what came before it is cut off first.
                    let frame = self.open.split_off(start);
                    self.cut();
                    let spliced = spliced.into_iter().map(|(at, b)| (at - start, b));
                    Encoded::assemble(Bytes::from(frame), spliced.collect())
                        .push_into(&mut self.frames);
                }
                self.len += LEN_PREFIX + len as usize;
                self.whole = self.open.len();
                if !self.in_parts {
                    // The transport takes each frame as one buffer (a message).
                    self.cut();
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

    /// Drops the part of a frame that an encoding left behind when it panicked.
    pub(crate) fn discard_partial(&mut self) {
        self.open.truncate(self.whole);
    }

    /// Takes every frame of the batch, in order, leaving it empty.
    pub(crate) fn take(&mut self) -> Vec<Bytes> {
        self.cut();
        self.len = 0;
        std::mem::take(&mut self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Header;
    use crate::ByteBuf;

    fn header() -> Vec<u8> {
        postcard::to_stdvec(&Header::StreamItem { stream: 7 }).expect("header")
    }

    /// Splits concatenated frames back into (header, item) pairs.
    fn frames_of(bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some((prefix, tail)) = rest.split_first_chunk::<LEN_PREFIX>() {
            let len = u32::from_le_bytes(*prefix) as usize;
            let (frame, tail) = tail.split_at(len);
            let (header, body) = postcard::take_from_bytes::<Header>(frame).expect("header");
            out.push((header, body.to_vec()));
            rest = tail;
        }
        assert!(rest.is_empty(), "a frame was cut short");
        out
    }

    #[test]
    fn small_items_share_one_buffer_and_decode_as_sent() {
        let mut batch = Batch::new(&header(), u32::MAX, true);
        let mut lens = Vec::new();
        for n in [1u32, 300, 70_000] {
            lens.push(batch.push(&n).expect("encodes"));
        }
        let frames = batch.take();
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

    #[test]
    fn large_buffers_go_out_as_they_are_between_small_frames() {
        let large = ByteBuf::from(vec![9u8; 1 << 20]);
        let mut batch = Batch::new(&header(), u32::MAX, true);
        batch.push(&1u32).expect("small");
        let len = batch.push(&large).expect("large");
        batch.push(&2u32).expect("small");
        let before = batch.len();
        let frames = batch.take();
        assert!(
            frames.iter().any(|f| f.len() == 1 << 20),
            "spliced, not copied"
        );
        let all = frames.concat();
        assert_eq!(all.len(), before);
        let decoded = frames_of(&all);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1].1.len() + 2, len as usize);
        let back: ByteBuf = postcard::from_bytes(&decoded[1].1).expect("buffer");
        assert_eq!(back, large);
    }

    #[test]
    fn each_frame_is_a_buffer_of_its_own_for_a_message_transport() {
        let mut batch = Batch::new(&header(), u32::MAX, false);
        batch.push(&1u32).expect("small");
        batch
            .push(&ByteBuf::from(vec![9u8; 1 << 20]))
            .expect("large");
        let frames = batch.take();
        assert_eq!(frames.len(), 2);
        for frame in frames {
            assert_eq!(frames_of(&frame).len(), 1, "one whole frame");
        }
    }

    #[test]
    fn an_item_over_the_maximum_leaves_the_batch_as_it_was() {
        let mut batch = Batch::new(&header(), 16, false);
        batch.push(&1u32).expect("small");
        let too_large = vec![0u8; 64];
        assert!(matches!(
            batch.push(&too_large),
            Err(WireError::ResultTooLarge { max: 16, .. })
        ));
        batch.push(&2u32).expect("small");
        let decoded = frames_of(&batch.take().concat());
        let items: Vec<u32> = decoded
            .iter()
            .map(|(_, body)| postcard::from_bytes(body).expect("item"))
            .collect();
        assert_eq!(items, [1, 2]);
    }
}
