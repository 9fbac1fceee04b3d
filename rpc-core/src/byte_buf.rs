//! [`ByteBuf`]: a byte buffer that travels as one block.
//!
//! serde sees a `Vec<u8>` or a `&[u8]` as a sequence of `u8`s. postcard happens to lay a byte
//! sequence out the same way as a byte string (a varint length, then the bytes), but it gets
//! there one element at a time: encoding calls the serializer once per byte and decoding hands
//! each byte to a visitor, through the depth guard of [`crate::decode`]. For a 1 MiB buffer that
//! is a million calls each way. A [`ByteBuf`] is serialized with `serialize_bytes` and
//! deserialized with `deserialize_byte_buf`, so encoding is one `memcpy` into the frame and
//! decoding one copy out of it.
//!
//! The wire encoding is the same as that of a `Vec<u8>`, so a peer that reads or writes a
//! `Vec<u8>` in its place decodes the same bytes. The interface fingerprint sees shapes,
//! though, and a `ByteBuf` (bytes) has another shape than a `Vec<u8>` (a sequence of `u8`): a
//! method declared with one on one end and the other on the other end is incompatible.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};

/// Most bytes set aside ahead of the data for a buffer that arrives as a sequence (from a format
/// other than postcard): a size hint from a peer is never trusted for more.
const SEQ_PREALLOC: usize = 4096;

/// A byte buffer for arguments and results: encoded as one block of bytes, not byte by byte.
///
/// Use it in a service method wherever a `Vec<u8>` would carry more than a few bytes. It wraps a
/// [`Bytes`], so cloning it is cheap and converting from a `Vec<u8>` or a [`Bytes`] does not
/// copy. It dereferences to `[u8]`.
///
/// ```
/// use rpc_core::ByteBuf;
///
/// let data = ByteBuf::from(vec![1u8, 2, 3]);
/// assert_eq!(&data[..], [1, 2, 3]);
/// // The same bytes on the wire as the `Vec<u8>`, produced in one block.
/// assert_eq!(postcard::to_stdvec(&data).unwrap(), [3, 1, 2, 3]);
/// assert_eq!(Vec::from(data), [1, 2, 3]);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteBuf(Bytes);

impl ByteBuf {
    /// An empty buffer. Does not allocate.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A buffer over static bytes. Does not allocate or copy.
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        Self(Bytes::from_static(bytes))
    }

    /// A buffer holding a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(bytes))
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The underlying [`Bytes`]. Does not copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The bytes as a `Vec<u8>`; copies only if the buffer is shared or was not made from a
    /// `Vec<u8>`.
    pub fn into_vec(self) -> Vec<u8> {
        Vec::from(self.0)
    }
}

impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bytes prints as an escaped byte string, which is readable for small buffers.
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Deref for ByteBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for ByteBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for ByteBuf {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Bytes::from(bytes))
    }
}

impl From<Bytes> for ByteBuf {
    fn from(bytes: Bytes) -> Self {
        Self(bytes)
    }
}

impl From<&'static [u8]> for ByteBuf {
    fn from(bytes: &'static [u8]) -> Self {
        Self::from_static(bytes)
    }
}

impl From<ByteBuf> for Bytes {
    fn from(buf: ByteBuf) -> Self {
        buf.0
    }
}

impl From<ByteBuf> for Vec<u8> {
    fn from(buf: ByteBuf) -> Self {
        buf.into_vec()
    }
}

impl PartialEq<[u8]> for ByteBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl PartialEq<Vec<u8>> for ByteBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.0 == other
    }
}

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.len() >= SPLICE_MIN {
            LARGE_SEEN.with(|seen| seen.set(seen.get() + 1));
            if SPLICE.with(|splice| splice.get()) {
                // The length as postcard writes it before a byte string (a varint); the bytes
                // themselves go into the frame as they are, where the encoder splices them.
                let written = serializer.serialize_u64(self.0.len() as u64)?;
                SPLICED.with(|spliced| spliced.replace(Some(self.0.clone())));
                SPLICE_PENDING.with(|pending| pending.set(true));
                return Ok(written);
            }
        }
        serializer.serialize_bytes(&self.0)
    }
}

/// Byte buffers at least this large are not copied into the frames they are sent in: the frame
/// is sent in parts, the buffer's own bytes one of them (on transports that take frames in
/// parts).
const SPLICE_MIN: usize = 64 * 1024;

thread_local! {
    /// Large buffers serialized on this thread since the count was last taken.
    static LARGE_SEEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether large buffers are being left out of the encoding on this thread.
    static SPLICE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The bytes of the large buffer whose length was just written, for the encoder to place.
    static SPLICED: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    /// Whether `SPLICED` holds bytes: checked first, as it is cheaper to read.
    static SPLICE_PENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts the large buffers that `serialize` serializes (a size pass, say).
pub(crate) fn count_large(serialize: impl FnOnce()) -> usize {
    let before = LARGE_SEEN.with(std::cell::Cell::get);
    serialize();
    LARGE_SEEN.with(std::cell::Cell::get).wrapping_sub(before)
}

/// Runs `encode` with large buffers left out of the encoding: each writes its length, then
/// leaves its bytes for [`take_spliced`], which the encoder's output calls before each write.
pub(crate) fn splicing<R>(encode: impl FnOnce() -> R) -> R {
    /// Ends splicing, also if `encode` panics.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = SPLICE.try_with(|splice| splice.set(false));
            if SPLICE_PENDING.try_with(|pending| pending.replace(false)) == Ok(true) {
                let _ = SPLICED.try_with(|spliced| spliced.take());
            }
        }
    }
    SPLICE.with(|splice| splice.set(true));
    let _restore = Restore;
    encode()
}

/// The bytes of the large buffer whose length was written last, if not taken yet.
pub(crate) fn take_spliced() -> Option<Bytes> {
    if !SPLICE_PENDING.with(|pending| pending.replace(false)) {
        return None;
    }
    SPLICED.with(|spliced| spliced.take())
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }
}

/// Byte buffers at least this large are decoded as a view of the frame they arrived in
/// (see [`sharing`]); smaller ones are copied, so that a small buffer kept for long does not keep
/// a large read buffer alive.
const SHARE_MIN: usize = 64 * 1024;

thread_local! {
    /// The frame being decoded on this thread, if its byte buffers may share it.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` (which decodes values from `frame`) so that the large [`ByteBuf`]s it decodes
/// are views of `frame` rather than copies.
pub(crate) fn sharing<R>(frame: &Bytes, decode: impl FnOnce() -> R) -> R {
    /// Puts the previous source back, also if `decode` panics.
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = SOURCE.try_with(|source| source.replace(previous));
        }
    }
    if frame.len() < SHARE_MIN {
        return decode();
    }
    let previous = SOURCE.with(|source| source.replace(Some(frame.clone())));
    let _restore = Restore(previous);
    decode()
}

/// `bytes` as a view of the frame being decoded, if it lies inside it and is large enough.
fn shared_slice(bytes: &[u8]) -> Option<Bytes> {
    if bytes.len() < SHARE_MIN {
        return None;
    }
    SOURCE.with(|source| {
        let source = source.try_borrow().ok()?;
        let frame = source.as_ref()?;
        let start = frame.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        let inside =
            at >= start && at.checked_add(bytes.len())? <= start.checked_add(frame.len())?;
        inside.then(|| frame.slice_ref(bytes))
    })
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte buffer")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ByteBuf, E> {
        #[cfg(test)]
        visits::record(|v| v.blocks += 1);
        Ok(ByteBuf(
            shared_slice(bytes).unwrap_or_else(|| Bytes::copy_from_slice(bytes)),
        ))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<ByteBuf, E> {
        #[cfg(test)]
        visits::record(|v| v.blocks += 1);
        Ok(ByteBuf::from(bytes))
    }

    /// Formats without byte strings send a sequence of `u8`s.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(SEQ_PREALLOC);
        let mut bytes = Vec::with_capacity(hint);
        while let Some(byte) = seq.next_element::<u8>()? {
            #[cfg(test)]
            visits::record(|v| v.elements += 1);
            bytes.push(byte);
        }
        Ok(ByteBuf::from(bytes))
    }
}

/// How the visitor was fed, counted in tests so that they can tell the block path from the
/// element-by-element one.
#[cfg(test)]
mod visits {
    use std::cell::Cell;

    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub(super) struct Visits {
        /// Whole buffers handed over at once.
        pub(super) blocks: usize,
        /// Bytes handed over one at a time.
        pub(super) elements: usize,
    }

    thread_local! {
        static VISITS: Cell<Visits> = Cell::new(Visits::default());
    }

    pub(super) fn record(f: impl FnOnce(&mut Visits)) {
        VISITS.with(|cell| {
            let mut visits = cell.get();
            f(&mut visits);
            cell.set(visits);
        });
    }

    /// The visits counted on this thread since the last call.
    pub(super) fn take() -> Visits {
        VISITS.with(|cell| cell.take())
    }
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error as ValueError, SeqDeserializer};

    use super::*;
    use crate::decode::{from_slice, DecodeError, DecodeLimits};

    const MIB: usize = 1024 * 1024;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).expect("encodes")
    }

    /// postcard's encoding of a byte string: a varint length, then the bytes.
    fn postcard_bytes(bytes: &[u8]) -> Vec<u8> {
        struct AsBytes<'a>(&'a [u8]);
        impl Serialize for AsBytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        encode(&AsBytes(bytes))
    }

    #[test]
    fn encodes_as_postcard_bytes_and_as_a_vec() {
        for len in [0, 1, 127, 128, 300, 70_000, MIB] {
            let data = pattern(len);
            let buf = ByteBuf::from(data.clone());
            let encoded = encode(&buf);
            assert_eq!(encoded, postcard_bytes(&data), "{len} bytes");
            assert_eq!(encoded, encode(&data), "{len} bytes, as a Vec<u8>");
        }
        assert_eq!(encode(&ByteBuf::from_static(b"ab")), [2, b'a', b'b']);
        assert_eq!(encode(&ByteBuf::new()), [0]);
        // 1 MiB: a three-byte varint length, then the bytes.
        assert_eq!(
            encode(&ByteBuf::from(vec![7; MIB]))[..4],
            [0x80, 0x80, 0x40, 7]
        );
    }

    #[test]
    fn round_trips_through_the_guarded_decoder() {
        let limits = DecodeLimits::default();
        for len in [0, 1, 128, 70_000, MIB] {
            let data = pattern(len);
            let decoded: ByteBuf = from_slice(&encode(&data), &limits).expect("decodes");
            assert_eq!(decoded, data, "{len} bytes");
            // And a Vec<u8> decodes what a ByteBuf encodes.
            let back: Vec<u8> = from_slice(&encode(&decoded), &limits).expect("decodes");
            assert_eq!(back, data);
        }
        let nested: (u8, Vec<ByteBuf>, Option<ByteBuf>) =
            (1, vec![ByteBuf::from_static(b"x"), ByteBuf::new()], None);
        assert_eq!(from_slice(&encode(&nested), &limits), Ok(nested));
    }

    #[test]
    fn a_megabyte_is_decoded_as_one_block() {
        let data = pattern(MIB);
        let encoded = encode(&ByteBuf::from(data.clone()));
        visits::take();
        let decoded: ByteBuf = from_slice(&encoded, &DecodeLimits::default()).expect("decodes");
        assert_eq!(decoded, data);
        assert_eq!(
            visits::take(),
            visits::Visits {
                blocks: 1,
                elements: 0
            }
        );
    }

    #[test]
    fn large_buffers_are_views_of_their_frame_and_small_ones_copies() {
        let limits = DecodeLimits::default();
        let inside = |buf: &ByteBuf, frame: &Bytes| {
            let (start, at) = (frame.as_ptr() as usize, buf.as_ptr() as usize);
            at >= start && at < start + frame.len()
        };
        let big = pattern(SHARE_MIN);
        let frame = Bytes::from(encode(&(7u8, ByteBuf::from(big.clone()))));
        let (tag, decoded): (u8, ByteBuf) =
            sharing(&frame, || from_slice(&frame, &limits)).expect("decodes");
        assert_eq!((tag, &decoded), (7, &ByteBuf::from(big.clone())));
        assert!(inside(&decoded, &frame), "a view of the frame");
        // Without the frame being named, or from other bytes, it is a copy.
        let copied: (u8, ByteBuf) = from_slice(&frame, &limits).expect("decodes");
        assert!(!inside(&copied.1, &frame));
        let other = Bytes::from(encode(&ByteBuf::from(big.clone())));
        let decoded: ByteBuf = sharing(&frame, || from_slice(&other, &limits)).expect("decodes");
        assert_eq!(decoded, big);
        assert!(!inside(&decoded, &frame) && !inside(&decoded, &other));
        // Small buffers are copied even from the frame.
        let small = Bytes::from(encode(&ByteBuf::from(pattern(SHARE_MIN - 1))));
        let decoded: ByteBuf = sharing(&small, || from_slice(&small, &limits)).expect("decodes");
        assert_eq!(decoded.len(), SHARE_MIN - 1);
        assert!(!inside(&decoded, &small));
        // The frame is not kept once decoding is over.
        assert!(SOURCE.with(|source| source.borrow().is_none()));
    }

    #[test]
    fn the_element_path_is_counted() {
        // A deserializer that only knows sequences feeds the visitor byte by byte: the counter
        // that the test above expects to stay at zero does count these.
        let data = pattern(1000);
        visits::take();
        let decoded = ByteBuf::deserialize(SeqDeserializer::<_, ValueError>::new(
            data.clone().into_iter(),
        ))
        .expect("decodes");
        assert_eq!(decoded, data);
        assert_eq!(
            visits::take(),
            visits::Visits {
                blocks: 0,
                elements: 1000
            }
        );
    }

    #[test]
    fn costs_no_nesting_level() {
        let encoded = encode(&ByteBuf::from(pattern(10)));
        let flat = DecodeLimits::new(0);
        assert_eq!(
            from_slice::<ByteBuf>(&encoded, &flat),
            Ok(ByteBuf::from(pattern(10)))
        );
        // A Vec<u8> is a sequence, one level deep.
        assert_eq!(
            from_slice::<Vec<u8>>(&encoded, &flat),
            Err(DecodeError::TooDeep { max_depth: 0 })
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let limits = DecodeLimits::default();
        // Claims 1 MiB, has 3 bytes: fails without reserving the claimed length.
        assert!(matches!(
            from_slice::<ByteBuf>(&[0x80, 0x80, 0x40, 1, 2, 3], &limits),
            Err(DecodeError::Malformed(
                postcard::Error::DeserializeUnexpectedEnd
            ))
        ));
        assert!(matches!(
            from_slice::<ByteBuf>(&[], &limits),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            from_slice::<ByteBuf>(&[1, 9, 9], &limits),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn conversions_do_not_lose_bytes() {
        let vec = pattern(100);
        let buf = ByteBuf::from(vec.clone());
        assert_eq!(buf.len(), 100);
        assert!(!buf.is_empty());
        assert_eq!(buf.as_slice(), &vec[..]);
        assert_eq!(buf.clone().into_vec(), vec);
        assert_eq!(Bytes::from(buf.clone()), Bytes::from(vec.clone()));
        assert_eq!(ByteBuf::copy_from_slice(&vec), buf);
        assert_eq!(ByteBuf::from(Bytes::from(vec.clone())), buf);
        assert!(ByteBuf::new().is_empty());
        assert_eq!(format!("{:?}", ByteBuf::from_static(b"a\0")), "b\"a\\0\"");
    }
}
