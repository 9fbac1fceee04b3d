//! Encoding frames: a header and a body into one buffer of the frame's exact size.

use bytes::{Buf, Bytes};
use serde::Serialize;

use super::header::encode_small;
use crate::protocol::{Header, LEN_PREFIX};

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("encoding failed")]
    Postcard(#[from] postcard::Error),
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: u64, max: u32 },
}

/// An encoded frame: one buffer, or parts to send one after the other (a large byte buffer of
/// the frame stays in its own allocation).
#[derive(Debug)]
pub(crate) enum Encoded {
    /// The whole frame.
    One(Bytes),
    /// The frame in order; only on transports that take frames in parts.
    Parts(Vec<Bytes>),
}

impl Encoded {
    /// Appends the frame to `out`, in its parts.
    pub(crate) fn push_into(self, out: &mut Vec<Bytes>) {
        match self {
            Encoded::One(frame) => out.push(frame),
            Encoded::Parts(parts) => out.extend(parts),
        }
    }

    /// The frame in one buffer.
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Encoded::One(frame) => frame,
            Encoded::Parts(parts) => Bytes::from(parts.concat()),
        }
    }

    /// The frame in parts: `out` split where the `spliced` buffers go.
    pub(crate) fn assemble(out: Bytes, spliced: Vec<(usize, Bytes)>) -> Self {
        if spliced.is_empty() {
            return Encoded::One(out);
        }
        let mut parts = Vec::with_capacity(2 * spliced.len() + 1);
        let mut from = 0;
        for (at, bytes) in spliced {
            if at > from {
                parts.push(out.slice(from..at));
            }
            parts.push(bytes);
            from = at;
        }
        if from < out.len() {
            parts.push(out.slice(from..));
        }
        Encoded::Parts(parts)
    }
}

/// Encodes one frame: prefix, header, then the encoding of the body, if any.
///
/// The frame is sized first and encoded into one allocation of exactly its length, so that
/// turning it into [`Bytes`] neither copies nor reallocates. With `in_parts`, large byte
/// buffers ([`crate::ByteBuf`]) are not copied: the frame comes in parts, theirs among them.
pub(crate) fn encode_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: FrameBody<'_, B>,
    max_frame: u32,
    in_parts: bool,
) -> Result<Encoded, EncodeError> {
    let small = encode_small(header);
    let header_len = match &small {
        Some(small) => small.as_bytes().len(),
        None => postcard::experimental::serialized_size(header)?,
    };
    let mut body_len = 0;
    let large = crate::byte_buf::count_large(|| {
        if let FrameBody::Value(value) = body {
            body_len = postcard::experimental::serialized_size(value).unwrap_or(usize::MAX);
        }
    });
    if body_len == usize::MAX {
        // The size pass failed; the encoding says why.
        if let FrameBody::Value(value) = body {
            postcard::experimental::serialized_size(value)?;
        }
    }
    let len32 = checked_len(header_len as u64 + body_len as u64, max_frame)?;
    let splice = in_parts && large > 0;
    let mut out = Vec::with_capacity(LEN_PREFIX + header_len + if splice { 64 } else { body_len });
    out.extend_from_slice(&len32.to_le_bytes());
    match &small {
        Some(small) => out.extend_from_slice(small.as_bytes()),
        None => encode_into(header, &mut out)?,
    }
    let mut spliced = Vec::new();
    match body {
        FrameBody::None => {}
        FrameBody::Value(value) if splice => encode_spliced(value, &mut out, &mut spliced)?,
        FrameBody::Value(value) => encode_into(value, &mut out)?,
    }
    let total = out.len() + spliced.iter().map(|(_, b)| b.len()).sum::<usize>();
    if total != LEN_PREFIX + len32 as usize {
        // The size pass and the encoding disagree: a `Serialize` impl that is not deterministic.
        return Err(EncodeError::Postcard(postcard::Error::SerializeBufferFull));
    }
    Ok(Encoded::assemble(Bytes::from(out), spliced))
}

/// Appends the postcard encoding of `value` to `out`, leaving large byte buffers out: each one's
/// position in `out` and its bytes go to `spliced`.
pub(crate) fn encode_spliced<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    spliced: &mut Vec<(usize, Bytes)>,
) -> Result<(), postcard::Error> {
    crate::byte_buf::splicing(|| {
        postcard::serialize_with_flavor(value, SplicingFlavor { out, spliced })
    })
}

/// A postcard output that appends to a borrowed `Vec` and notes where spliced buffers go.
struct SplicingFlavor<'a> {
    out: &'a mut Vec<u8>,
    spliced: &'a mut Vec<(usize, Bytes)>,
}

impl SplicingFlavor<'_> {
    /// A large buffer whose length was just written goes here, before anything else.
    fn place(&mut self) {
        if let Some(bytes) = crate::byte_buf::take_spliced() {
            self.spliced.push((self.out.len(), bytes));
        }
    }
}

impl postcard::ser_flavors::Flavor for SplicingFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.place();
        self.out.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.place();
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.place();
        Ok(())
    }
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
    match encode_frame::<()>(header, FrameBody::None, u32::MAX, false) {
        Ok(Encoded::One(frame)) => frame,
        _ => Bytes::new(),
    }
}

/// Room in front of an encoded result for the reply frame's length prefix and header: a reply
/// header is a kind byte, a request id (a varint of at most 10 bytes) and a one-byte status.
const REPLY_HEADROOM: usize = LEN_PREFIX + 12;

/// A value encoded (postcard) as the body of a reply.
///
/// It is encoded once, into a buffer of exactly the reply frame's size with room in front for
/// the frame's prefix and header, so that the reply goes out without another copy.
pub struct EncodedResult {
    buf: Vec<u8>,
    /// Large byte buffers left out of `buf`: where each goes, and its bytes.
    spliced: Vec<(usize, Bytes)>,
}

impl EncodedResult {
    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// postcard's error if `value` cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, postcard::Error> {
        let mut len = Ok(0);
        let large =
            crate::byte_buf::count_large(|| len = postcard::experimental::serialized_size(value));
        let len = len?;
        let mut spliced = Vec::new();
        let mut buf = Vec::with_capacity(REPLY_HEADROOM + if large > 0 { 64 } else { len });
        buf.resize(REPLY_HEADROOM, 0);
        if large > 0 {
            encode_spliced(value, &mut buf, &mut spliced)?;
        } else {
            encode_into(value, &mut buf)?;
        }
        Ok(Self { buf, spliced })
    }

    /// The length of the encoded value.
    fn len(&self) -> usize {
        self.buf.len().saturating_sub(REPLY_HEADROOM)
            + self.spliced.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// The reply frame: `header` (postcard) then this value, behind the length prefix.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] if the frame would exceed `max_frame`.
    ///
    /// With `in_parts`, large byte buffers stay in their own allocations (the frame comes in
    /// parts); without, they are copied into the frame.
    pub(crate) fn into_frame(
        self,
        header: &[u8],
        max_frame: u32,
        in_parts: bool,
    ) -> Result<Encoded, EncodeError> {
        let len = checked_len(header.len() as u64 + self.len() as u64, max_frame)?;
        let Self { mut buf, spliced } = self;
        let start = REPLY_HEADROOM.checked_sub(LEN_PREFIX + header.len());
        let Some(start) = start.filter(|_| in_parts || spliced.is_empty()) else {
            // Built anew, in one buffer: large buffers are to be copied in, or the header is
            // longer than the room set aside (it cannot be).
            let mut frame = Vec::with_capacity(LEN_PREFIX + len as usize);
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(header);
            let mut from = REPLY_HEADROOM;
            for (at, bytes) in spliced {
                frame.extend_from_slice(buf.get(from..at).unwrap_or_default());
                frame.extend_from_slice(&bytes);
                from = at;
            }
            frame.extend_from_slice(buf.get(from..).unwrap_or_default());
            return Ok(Encoded::One(Bytes::from(frame)));
        };
        if let Some(room) = buf.get_mut(start..REPLY_HEADROOM) {
            let (prefix, rest) = room.split_at_mut(LEN_PREFIX);
            prefix.copy_from_slice(&len.to_le_bytes());
            rest.copy_from_slice(header);
        }
        let mut frame = Bytes::from(buf);
        frame.advance(start);
        if spliced.is_empty() {
            return Ok(Encoded::One(frame));
        }
        let spliced = spliced
            .into_iter()
            .map(|(at, bytes)| (at - start, bytes))
            .collect();
        Ok(Encoded::assemble(frame, spliced))
    }
}

impl std::fmt::Debug for EncodedResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedResult")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ReplyStatus;
    use crate::ByteBuf;

    /// The frame's bytes in one buffer, and how many parts it came in.
    fn joined(frame: Encoded) -> (Vec<u8>, usize) {
        match frame {
            Encoded::One(frame) => (frame.to_vec(), 1),
            Encoded::Parts(parts) => (parts.concat(), parts.len()),
        }
    }

    #[test]
    fn encode_checks_the_maximum() {
        let header = Header::Notify { method: 0 };
        let ok = encode_frame(&header, FrameBody::Value(&[0u8; 10]), 12, false).expect("fits");
        assert_eq!(joined(ok).0.len(), 4 + 12);
        assert!(matches!(
            encode_frame(&header, FrameBody::Value(&[0u8; 11]), 12, false),
            Err(EncodeError::TooLarge { len: 13, max: 12 })
        ));
    }

    /// Large byte buffers are spliced into the frame, not copied, when the transport takes
    /// parts: the bytes are those of one buffer, and the buffer's own allocation is a part.
    #[test]
    fn large_buffers_are_spliced_not_copied() {
        let big = ByteBuf::from(vec![7u8; 100_000]);
        let other = ByteBuf::from(vec![9u8; 70_000]);
        let value = (1u32, big.clone(), "between", other.clone(), 5u8);
        let header = Header::Notify { method: 3 };
        let whole =
            encode_frame(&header, FrameBody::Value(&value), u32::MAX, false).expect("encodes");
        let (whole, parts) = joined(whole);
        assert_eq!(parts, 1);
        let spliced =
            encode_frame(&header, FrameBody::Value(&value), u32::MAX, true).expect("encodes");
        let Encoded::Parts(ref pieces) = spliced else {
            panic!("expected parts, got {spliced:?}");
        };
        assert!(pieces.iter().any(|p| p.as_ptr() == big.as_ptr()));
        assert!(pieces.iter().any(|p| p.as_ptr() == other.as_ptr()));
        assert_eq!(joined(spliced).0, whole);

        // The same for a reply, spliced or copied in.
        let reply = postcard::to_stdvec(&Header::Reply {
            id: 9,
            status: ReplyStatus::Ok,
        })
        .expect("encodes");
        let expected = encode_frame(
            &Header::Reply {
                id: 9,
                status: ReplyStatus::Ok,
            },
            FrameBody::Value(&value),
            u32::MAX,
            false,
        )
        .expect("encodes");
        let expected = joined(expected).0;
        for in_parts in [false, true] {
            let frame = EncodedResult::encode(&value)
                .expect("encodes")
                .into_frame(&reply, u32::MAX, in_parts)
                .expect("fits");
            let (bytes, parts) = joined(frame);
            assert_eq!(bytes, expected, "in parts: {in_parts}");
            assert_eq!(parts > 1, in_parts);
        }
    }

    /// A reply built in the room in front of an encoded result is the frame that encoding the
    /// header and the value in one go gives.
    #[test]
    fn reply_frame_in_place_matches_a_fresh_encoding() {
        for id in [0, 1, 300, u64::MAX] {
            for value in [vec![], vec![7u8; 3], vec![1u8; 70_000]] {
                let header = Header::Reply {
                    id,
                    status: ReplyStatus::Ok,
                };
                let expected = encode_frame(&header, FrameBody::Value(&value), u32::MAX, false)
                    .expect("encodes");
                let encoded = EncodedResult::encode(&value).expect("encodes");
                assert_eq!(
                    encoded.len(),
                    postcard::to_stdvec(&value).expect("encodes").len()
                );
                let header = postcard::to_stdvec(&header).expect("encodes");
                let frame = encoded.into_frame(&header, u32::MAX, true).expect("fits");
                assert_eq!(
                    joined(frame),
                    joined(expected),
                    "id {id}, {} bytes",
                    value.len()
                );
            }
        }
    }

    #[test]
    fn reply_frame_checks_the_maximum() {
        let encoded = EncodedResult::encode(&[0u8; 10]).expect("encodes");
        assert!(matches!(
            encoded.into_frame(&[5, 1, 0], 12, true),
            Err(EncodeError::TooLarge { len: 13, max: 12 })
        ));
        let encoded = EncodedResult::encode(&[0u8; 9]).expect("encodes");
        assert_eq!(
            joined(encoded.into_frame(&[5, 1, 0], 12, true).expect("fits"))
                .0
                .len(),
            4 + 12
        );
    }
}
