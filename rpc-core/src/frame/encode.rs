//! Encoding frames: a header and a body into one buffer of the frame's exact size.

use bytes::{Buf, Bytes};
use serde::Serialize;

use crate::protocol::{Header, LEN_PREFIX};

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

/// Room in front of an encoded result for the reply frame's length prefix and header: a reply
/// header is a kind byte, a request id (a varint of at most 10 bytes) and a one-byte status.
const REPLY_HEADROOM: usize = LEN_PREFIX + 12;

/// A value encoded (postcard) as the body of a reply.
///
/// It is encoded once, into a buffer of exactly the reply frame's size with room in front for
/// the frame's prefix and header, so that the reply goes out without another copy.
pub struct EncodedResult {
    buf: Vec<u8>,
}

impl EncodedResult {
    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// postcard's error if `value` cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, postcard::Error> {
        let len = postcard::experimental::serialized_size(value)?;
        let mut buf = Vec::with_capacity(REPLY_HEADROOM + len);
        buf.resize(REPLY_HEADROOM, 0);
        encode_into(value, &mut buf)?;
        Ok(Self { buf })
    }

    /// The encoded value.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(REPLY_HEADROOM..).unwrap_or_default()
    }

    /// The reply frame: `header` (postcard) then this value, behind the length prefix.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] if the frame would exceed `max_frame`.
    pub(crate) fn into_frame(self, header: &[u8], max_frame: u32) -> Result<Bytes, EncodeError> {
        let body_len = self.buf.len().saturating_sub(REPLY_HEADROOM);
        let len = checked_len(header.len() as u64 + body_len as u64, max_frame)?;
        let mut buf = self.buf;
        let start = REPLY_HEADROOM.checked_sub(LEN_PREFIX + header.len());
        let Some(start) = start else {
            // A header longer than the room set aside (it cannot be): build the frame anew.
            let mut frame = Vec::with_capacity(LEN_PREFIX + len as usize);
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(header);
            frame.extend_from_slice(buf.get(REPLY_HEADROOM..).unwrap_or_default());
            return Ok(Bytes::from(frame));
        };
        if let Some(room) = buf.get_mut(start..REPLY_HEADROOM) {
            let (prefix, rest) = room.split_at_mut(LEN_PREFIX);
            prefix.copy_from_slice(&len.to_le_bytes());
            rest.copy_from_slice(header);
        }
        let mut frame = Bytes::from(buf);
        frame.advance(start);
        Ok(frame)
    }
}

impl std::fmt::Debug for EncodedResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedResult")
            .field("len", &self.as_bytes().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ReplyStatus;

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
                let expected =
                    encode_frame(&header, FrameBody::Value(&value), u32::MAX).expect("encodes");
                let encoded = EncodedResult::encode(&value).expect("encodes");
                assert_eq!(
                    encoded.as_bytes(),
                    postcard::to_stdvec(&value).expect("encodes")
                );
                let header = postcard::to_stdvec(&header).expect("encodes");
                let frame = encoded.into_frame(&header, u32::MAX).expect("fits");
                assert_eq!(frame, expected, "id {id}, {} bytes", value.len());
            }
        }
    }

    #[test]
    fn reply_frame_checks_the_maximum() {
        let encoded = EncodedResult::encode(&[0u8; 10]).expect("encodes");
        assert!(matches!(
            encoded.into_frame(&[5, 1, 0], 12),
            Err(EncodeError::TooLarge { len: 13, max: 12 })
        ));
        let encoded = EncodedResult::encode(&[0u8; 9]).expect("encodes");
        assert_eq!(
            encoded.into_frame(&[5, 1, 0], 12).expect("fits").len(),
            4 + 12
        );
    }
}
