//! The frame header's codec: a [`Header`] is always its postcard encoding, but the kinds that
//! every call and stream item carries (call, notify, reply with a value or typed error, cancel,
//! stream item and part, credit, stop) are encoded and decoded here by hand, the rest through
//! serde.
//!
//! Both ways give the same bytes and accept the same input: the hand-written decoder takes only
//! what it is sure of (a kind byte it covers, each varint complete and in range) and leaves
//! anything else, malformed or not, to postcard, so errors are always postcard's. The unit tests
//! below and the `protocol_messages` fuzz target compare the two on the edge values and on
//! arbitrary bytes. By hand, a call's header is encoded once (serde's encoding needs a pass to
//! size the frame and another to write it) and decoded without serde's visitors.

use crate::protocol::{Header, ReplyStatus};

/// Longest header encoded by hand: a call's kind, request id, method id and deadline.
const MAX_HAND_ENCODED: usize = 1 + 10 + 5 + 1 + 10;

/// The variant indices of [`Header`] that postcard writes as the kind byte.
mod kind {
    pub(super) const CALL: u8 = 3;
    pub(super) const NOTIFY: u8 = 4;
    pub(super) const REPLY: u8 = 5;
    pub(super) const CANCEL: u8 = 6;
    pub(super) const STREAM_ITEM: u8 = 7;
    pub(super) const CREDIT: u8 = 9;
    pub(super) const STREAM_STOP: u8 = 11;
    pub(super) const STREAM_PART: u8 = 12;
}

/// A header encoded by hand, on the stack.
pub(crate) struct SmallHeader {
    buf: [u8; MAX_HAND_ENCODED],
    len: usize,
}

impl SmallHeader {
    /// The encoded bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// A postcard varint (LEB128): at most ten bytes, for which every header above has room
    /// where it writes one.
    fn varint(&mut self, mut value: u64) {
        let Some(out) = self.buf.get_mut(self.len..self.len + 10) else {
            return;
        };
        for slot in out {
            self.len += 1;
            if value < 0x80 {
                *slot = value as u8;
                return;
            }
            *slot = value as u8 | 0x80;
            value >>= 7;
        }
    }
}

/// The encoding of `header` if it is one of the kinds encoded by hand.
pub(crate) fn encode_small(header: &Header) -> Option<SmallHeader> {
    let mut out = SmallHeader {
        buf: [0; MAX_HAND_ENCODED],
        len: 0,
    };
    let (kind, first) = match *header {
        Header::Call {
            id,
            method,
            deadline_us,
        } => {
            out.push(kind::CALL);
            out.varint(id);
            out.varint(method.into());
            match deadline_us {
                None => out.push(0),
                Some(deadline) => {
                    out.push(1);
                    out.varint(deadline);
                }
            }
            return Some(out);
        }
        Header::Reply { id, ref status } => {
            let status = match status {
                ReplyStatus::Ok => 0,
                ReplyStatus::AppError => 1,
                ReplyStatus::Failed(_) => return None,
            };
            out.push(kind::REPLY);
            out.varint(id);
            out.push(status);
            return Some(out);
        }
        Header::Credit { stream, bytes } => {
            out.push(kind::CREDIT);
            out.varint(stream);
            out.varint(bytes.into());
            return Some(out);
        }
        Header::Notify { method } => (kind::NOTIFY, u64::from(method)),
        Header::Cancel { id } => (kind::CANCEL, id),
        Header::StreamItem { stream } => (kind::STREAM_ITEM, stream),
        Header::StreamStop { stream } => (kind::STREAM_STOP, stream),
        Header::StreamPart { stream } => (kind::STREAM_PART, stream),
        Header::Hello { .. }
        | Header::Welcome { .. }
        | Header::Reject(_)
        | Header::StreamEnd { .. }
        | Header::Goodbye { .. } => return None,
    };
    out.push(kind);
    out.varint(first);
    Some(out)
}

/// Appends `header`'s encoding to `out`.
///
/// # Errors
///
/// postcard's, if the header cannot be encoded.
pub fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    match encode_small(header) {
        Some(small) => {
            out.extend_from_slice(small.as_bytes());
            Ok(())
        }
        None => super::encode_into(header, out),
    }
}

/// Decodes the header at the front of `bytes`; returns it and the bytes after it (the body).
///
/// # Errors
///
/// postcard's, if the bytes are not a header.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), postcard::Error> {
    match decode_small(bytes) {
        Some(decoded) => Ok(decoded),
        None => postcard::take_from_bytes(bytes),
    }
}

/// The header at the front of `bytes` if it is one of the kinds decoded by hand and well
/// formed; `None` leaves the bytes to postcard.
fn decode_small(bytes: &[u8]) -> Option<(Header, &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let mut input = Input(rest);
    let header = match kind {
        kind::CALL => Header::Call {
            id: input.u64()?,
            method: input.u32()?,
            deadline_us: match input.byte()? {
                0 => None,
                1 => Some(input.u64()?),
                _ => return None,
            },
        },
        kind::REPLY => {
            let id = input.u64()?;
            let status = match input.byte()? {
                0 => ReplyStatus::Ok,
                1 => ReplyStatus::AppError,
                _ => return None,
            };
            Header::Reply { id, status }
        }
        kind::CREDIT => Header::Credit {
            stream: input.u64()?,
            bytes: input.u32()?,
        },
        kind::NOTIFY => Header::Notify {
            method: input.u32()?,
        },
        kind::CANCEL => Header::Cancel { id: input.u64()? },
        kind::STREAM_ITEM => Header::StreamItem {
            stream: input.u64()?,
        },
        kind::STREAM_STOP => Header::StreamStop {
            stream: input.u64()?,
        },
        kind::STREAM_PART => Header::StreamPart {
            stream: input.u64()?,
        },
        _ => return None,
    };
    Some((header, input.0))
}

/// The bytes of a header still to decode.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(byte)
    }

    /// A varint of at most `max_bytes` bytes whose last byte is at most `max_last`, as
    /// postcard reads it (it accepts redundant continuation bytes, and so does this).
    fn varint(&mut self, max_bytes: usize, max_last: u8) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().take(max_bytes).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i + 1 == max_bytes && byte > max_last {
                    return None;
                }
                self.0 = self.0.get(i + 1..)?;
                return Some(value);
            }
        }
        None
    }

    fn u64(&mut self) -> Option<u64> {
        self.varint(10, 0x01)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint(5, 0x0f)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GoodbyeReason, WireError};

    /// 0, 1, `u64::MAX`, and both sides of every varint length (7, 14, ... 63 bits).
    fn edges() -> Vec<u64> {
        let mut edges = vec![0, 1, u32::MAX as u64, u64::MAX];
        for bits in (7..64).step_by(7) {
            edges.extend([(1 << bits) - 1, 1 << bits]);
        }
        edges
    }

    fn headers() -> Vec<Header> {
        let mut headers = Vec::new();
        for a in edges() {
            let small = u32::try_from(a).unwrap_or(u32::MAX);
            for deadline_us in [None, Some(a), Some(u64::MAX - a)] {
                headers.push(Header::Call {
                    id: a,
                    method: small,
                    deadline_us,
                });
            }
            headers.extend([
                Header::Notify { method: small },
                Header::Reply {
                    id: a,
                    status: ReplyStatus::Ok,
                },
                Header::Reply {
                    id: a,
                    status: ReplyStatus::AppError,
                },
                Header::Reply {
                    id: a,
                    status: ReplyStatus::Failed(WireError::EncodeFailed),
                },
                Header::Cancel { id: a },
                Header::StreamItem { stream: a },
                Header::StreamPart { stream: a },
                Header::StreamStop { stream: a },
                Header::Credit {
                    stream: a,
                    bytes: small,
                },
                Header::StreamEnd {
                    stream: a,
                    error: None,
                },
                Header::Goodbye {
                    reason: GoodbyeReason::ShuttingDown,
                },
            ]);
        }
        headers
    }

    #[test]
    fn every_header_encodes_as_postcard_encodes_it() {
        for header in headers() {
            let expected = postcard::to_stdvec(&header).expect("postcard encodes");
            let mut out = Vec::new();
            encode_header(&header, &mut out).expect("encodes");
            assert_eq!(out, expected, "{header:?}");
        }
    }

    #[test]
    fn every_header_decodes_as_postcard_decodes_it_with_its_body_after_it() {
        for header in headers() {
            // No body, a short one and a long one: the body is never taken for more header.
            for body in [&[][..], &[0x2a, 0x80], &[0x80; 12]] {
                let mut bytes = postcard::to_stdvec(&header).expect("postcard encodes");
                bytes.extend_from_slice(body);
                let (decoded, rest) = decode_header(&bytes).expect("decodes");
                assert_eq!(decoded, header);
                assert_eq!(rest, body);
            }
        }
    }

    /// Every cut and every corruption of a byte of the headers above, alone and followed by a
    /// body: the decoder accepts
    /// what postcard accepts, as the same header with the same rest, and nothing else.
    #[test]
    fn truncated_and_corrupted_headers_decode_as_postcard_decodes_them() {
        let agree = |bytes: &[u8]| {
            let ours = decode_header(bytes).ok();
            let postcards = postcard::take_from_bytes::<Header>(bytes).ok();
            assert_eq!(ours, postcards, "{bytes:02x?}");
        };
        for header in headers() {
            let bytes = postcard::to_stdvec(&header).expect("postcard encodes");
            for cut in 0..bytes.len() {
                agree(bytes.get(..cut).unwrap_or_default());
            }
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x02, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0xff] {
                    let mut corrupted = bytes.clone();
                    if let Some(byte) = corrupted.get_mut(at) {
                        *byte = value;
                    }
                    agree(&corrupted);
                    // With a body after it, that a corrupted varint may run into.
                    for body in [[0x80; 12], [0x01; 12]] {
                        let mut framed = corrupted.clone();
                        framed.extend_from_slice(&body);
                        agree(&framed);
                    }
                }
            }
        }
    }

    #[test]
    fn varints_past_their_type_are_rejected_as_postcard_rejects_them() {
        // A cancel whose request id is `continued` bytes of `byte` with the continuation bit,
        // then `last`.
        let cancel = |byte: u8, continued: usize, last: u8| {
            let mut bytes = vec![kind::CANCEL];
            bytes.extend(std::iter::repeat_n(byte, continued));
            bytes.push(last);
            bytes
        };
        // A request id of 11 bytes, and one of 10 whose last byte holds more than 64 bits.
        let long = cancel(0x80, 10, 0);
        let wide = cancel(0x80, 9, 0x02);
        // A method id whose fifth byte holds more than 32 bits.
        let method = [kind::NOTIFY, 0xff, 0xff, 0xff, 0xff, 0x1f];
        for bytes in [&long[..], &wide[..], &method[..]] {
            assert!(decode_header(bytes).is_err(), "{bytes:02x?}");
            assert!(postcard::take_from_bytes::<Header>(bytes).is_err());
        }
        // The largest values are accepted, with redundant continuation bytes too.
        let max = cancel(0xff, 9, 0x01);
        assert_eq!(
            decode_header(&max).ok(),
            Some((Header::Cancel { id: u64::MAX }, &[][..]))
        );
        let redundant = [kind::CANCEL, 0x81, 0x00];
        assert_eq!(
            decode_header(&redundant).ok(),
            Some((Header::Cancel { id: 1 }, &[][..]))
        );
    }
}
