//! Decoding values from peers with a nesting limit.
//!
//! postcard has no limit on how deeply values nest, so a few kilobytes of a recursive type
//! (`enum Nested { Leaf, Node(Box<Nested>) }` costs one byte a level) would overflow the stack
//! and abort the process. [`from_slice`] wraps postcard's deserializer in the style of
//! `serde_stacker`: every visitor, access and seed that postcard hands out is wrapped, so every
//! nested value passes through the guard, which counts the levels and fails with
//! [`DecodeError::TooDeep`] before the stack runs out.
//!
//! A level is counted each time a visitor is handed nested data: every struct, tuple, tuple
//! struct, sequence, map, enum, `Some` and newtype struct is one level, and the fields of a tuple
//! or struct variant one more below their enum. Scalars, strings, byte buffers, units, `None` and
//! `Box` cost nothing. So `u32` is 0 levels deep, `Vec<u32>` 1, `Vec<Option<u32>>` 2, and
//! `Nested` with `n` nodes `n + 1`.
//!
//! A length read from the input is never trusted for pre-allocation either. serde's collections
//! reserve what a sequence or map says it holds ([`de::SeqAccess::size_hint`],
//! [`de::MapAccess::size_hint`]), up to 1 MiB each; postcard passes a map's claimed length
//! through unchecked, so a few hundred bytes of nested maps, each claiming four billion entries,
//! would reserve over a hundred megabytes. The guard caps both hints by the bytes the input has
//! left, and counts what it has already handed out: a sequence or map that has promised `n`
//! more elements needs at least `n` more bytes after the element being decoded, so a container
//! inside that element is told at most the bytes left minus the promises of the containers
//! around it. All the containers open at once are thus never told of more elements in total
//! than there are bytes left. An element takes at least one byte unless it encodes as nothing
//! (a unit, say), so an honest hint is cut only around such elements, and then the container
//! grows as elements come.
//!
//! Elements that encode as nothing (a `Vec<()>`'s) would let a length of a few bytes claim
//! more elements than a decode could count through in years: at most [`MAX_EMPTY_ELEMENTS`] of
//! them are taken in one value, past which it fails with [`DecodeError::TooManyEmpty`].

use std::cell::Cell;
use std::fmt;

use postcard::de_flavors::Flavor;
use serde::de;

use crate::protocol::WireDecodeError;

mod guard;
mod plan;

use guard::Guard;
pub(crate) use plan::{Plan, Side};

/// The nesting limit of [`DecodeLimits::default`].
pub(crate) const DEFAULT_MAX_DEPTH: u32 = 128;

/// Most elements of sequences and maps that take no bytes of the input (the units of a
/// `Vec<()>`) in one value decoded from a peer; past it the value fails with
/// [`DecodeError::TooManyEmpty`].
pub(crate) const MAX_EMPTY_ELEMENTS: usize = 1 << 16;

/// Limits applied when decoding data from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// How many levels values may nest; deeper values fail with [`DecodeError::TooDeep`].
    /// Every struct, tuple, sequence, map, enum, `Some` and newtype struct is one level, and
    /// the fields of a tuple or struct variant one more below their enum; scalars, strings,
    /// byte buffers, units, `None` and `Box` cost nothing. So `u32` is 0 levels deep,
    /// `Vec<u32>` 1 and `Vec<Option<u32>>` 2.
    pub max_depth: u32,
    /// The type to decode is known to nest no deeper than `max_depth` and to hold no sequence
    /// or map ([`Plan`]): the guard could refuse none of its values and is skipped.
    pub(crate) plain: bool,
}

impl DecodeLimits {
    /// Values may nest `max_depth` levels.
    pub const fn new(max_depth: u32) -> Self {
        Self {
            max_depth,
            plain: false,
        }
    }

    /// These limits, for a type that a [`Plan`] found cannot exceed them.
    pub(crate) fn plain(self) -> Self {
        Self {
            plain: true,
            ..self
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DEPTH)
    }
}

/// Why a value did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value nests deeper than [`DecodeLimits::max_depth`].
    #[error("value nested deeper than {max_depth} levels")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: u32,
    },
    /// The value has more than 65,536 elements that take no bytes of the input (the units of
    /// a `Vec<()>`): a length of a few bytes cannot make the receiver count for ever.
    #[error("more than {max} elements that take no bytes")]
    TooManyEmpty {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The value decoded but did not use all the bytes.
    #[error("{count} bytes left over after the value")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The bytes are not an encoding of the type.
    #[error("malformed encoding")]
    Malformed(#[source] postcard::Error),
}

impl From<&DecodeError> for WireDecodeError {
    fn from(err: &DecodeError) -> Self {
        match err {
            DecodeError::TooDeep { .. } => WireDecodeError::TooDeep,
            DecodeError::TrailingBytes { .. } => WireDecodeError::TrailingBytes,
            // As malformed on the wire, which has no word of its own for it.
            DecodeError::TooManyEmpty { .. } | DecodeError::Malformed(_) => {
                WireDecodeError::Malformed
            }
        }
    }
}

/// Decodes exactly one `T` from `bytes` (no trailing bytes allowed), never nesting deeper
/// than `limits.max_depth`; through postcard alone if the limits say the type is plain.
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(
    bytes: &'de [u8],
    limits: &DecodeLimits,
) -> Result<T, DecodeError> {
    if limits.plain {
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(DecodeError::Malformed)?;
        return match rest {
            [] => Ok(value),
            rest => Err(DecodeError::TrailingBytes { count: rest.len() }),
        };
    }
    /// Puts back the count of an enclosing decode on this thread, also if decoding panics.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = LEFT.try_with(|left| left.set(self.0));
        }
    }
    let _restore = Restore(LEFT.with(|left| left.replace(bytes.len())));
    let state = State {
        depth: Cell::new(0),
        max: limits.max_depth,
        smuggled: Cell::new(None),
        promised: Cell::new(0),
        empty: Cell::new(0),
    };
    let mut de = postcard::Deserializer::from_flavor(Input { bytes });
    let value = T::deserialize(Guard {
        inner: &mut de,
        state: &state,
    })
    .map_err(|e| match e {
        Error::Limit(Limit::Depth) => DecodeError::TooDeep {
            max_depth: limits.max_depth,
        },
        Error::Limit(Limit::Empty) => DecodeError::TooManyEmpty {
            max: MAX_EMPTY_ELEMENTS,
        },
        Error::Inner(e) => DecodeError::Malformed(e),
    })?;
    match de.finalize().map_err(DecodeError::Malformed)? {
        [] => Ok(value),
        rest => Err(DecodeError::TrailingBytes { count: rest.len() }),
    }
}

/// The input as a postcard flavor (a slice, like postcard's own) that shares how many bytes are
/// left with the wrappers, which cap size hints with it.
struct Input<'de> {
    bytes: &'de [u8],
}

thread_local! {
    /// How many bytes of the input of the decode under way on this thread are left (kept by
    /// [`Input`], read by [`State::cap`]). A thread-local rather than a shared counter, which
    /// would cost an allocation per decode.
    static LEFT: Cell<usize> = const { Cell::new(0) };
}

impl<'de> Input<'de> {
    #[inline]
    fn advance(&mut self, rest: &'de [u8]) {
        self.bytes = rest;
        LEFT.with(|left| left.set(rest.len()));
    }
}

impl<'de> Flavor<'de> for Input<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    #[inline]
    fn pop(&mut self) -> postcard::Result<u8> {
        let (&byte, rest) = self
            .bytes
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.advance(rest);
        Ok(byte)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len())
    }

    #[inline]
    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        let (taken, rest) = self
            .bytes
            .split_at_checked(ct)
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.advance(rest);
        Ok(taken)
    }

    #[inline]
    fn finalize(self) -> postcard::Result<&'de [u8]> {
        Ok(self.bytes)
    }
}

/// The error of the wrappers: the wrapped deserializer's error, or a limit.
#[derive(Debug, thiserror::Error)]
enum Error<E> {
    #[error("{0}")]
    Limit(Limit),
    #[error(transparent)]
    Inner(E),
}

/// A limit of the guard that a value exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// [`DecodeLimits::max_depth`].
    Depth,
    /// [`MAX_EMPTY_ELEMENTS`].
    Empty,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Depth => "value nested too deep",
            Limit::Empty => "too many elements that take no bytes",
        })
    }
}

impl<E: de::Error> de::Error for Error<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Inner(E::custom(msg))
    }
}

/// Shared by all the wrappers of one decode.
struct State {
    depth: Cell<u32>,
    max: u32,
    /// Set while an [`Error::Limit`] travels through the wrapped deserializer as its own error
    /// type, which cannot carry it; the next wrapper it comes out of turns it back.
    smuggled: Cell<Option<Limit>>,
    /// How many elements the open sequences and maps have promised after the ones being
    /// decoded (the sum of their [`GuardCollection::promised`]).
    promised: Cell<usize>,
    /// Elements of sequences and maps so far that took no bytes.
    empty: Cell<usize>,
}

impl State {
    /// A new sequence's or map's size hint, capped at the bytes left that the containers around
    /// it have not promised to their own elements.
    #[inline]
    fn cap(&self, hint: Option<usize>) -> Option<usize> {
        let free = LEFT.with(Cell::get).saturating_sub(self.promised.get());
        hint.map(|n| n.min(free))
    }

    /// Our error going into the wrapped deserializer.
    fn smuggle<E: de::Error>(&self, err: Error<E>) -> E {
        match err {
            Error::Limit(limit) => {
                self.smuggled.set(Some(limit));
                E::custom(limit)
            }
            Error::Inner(e) => e,
        }
    }

    /// The wrapped deserializer's error coming out to us. The deserializer passes errors
    /// straight up, so a smuggled [`Error::Limit`] is the next error out.
    fn recover<E>(&self, err: E) -> Error<E> {
        match self.smuggled.take() {
            Some(limit) => Error::Limit(limit),
            None => Error::Inner(err),
        }
    }

    /// Counts an element that took no bytes, or fails past [`MAX_EMPTY_ELEMENTS`].
    fn took_nothing<E>(&self) -> Result<(), Error<E>> {
        let empty = self.empty.get() + 1;
        if empty > MAX_EMPTY_ELEMENTS {
            return Err(Error::Limit(Limit::Empty));
        }
        self.empty.set(empty);
        Ok(())
    }

    /// Runs `f` one level deeper, or fails if that is too deep.
    fn nest<T, E: de::Error>(&self, f: impl FnOnce() -> Result<T, Error<E>>) -> Result<T, E> {
        let depth = self.depth.get();
        if depth >= self.max {
            return Err(self.smuggle(Error::Limit(Limit::Depth)));
        }
        self.depth.set(depth + 1);
        let result = f();
        self.depth.set(depth);
        result.map_err(|e| self.smuggle(e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;

    use serde::de::{DeserializeOwned, Deserializer, Visitor};
    use serde::{Deserialize, Serialize};

    use super::*;

    fn limits(max_depth: u32) -> DecodeLimits {
        DecodeLimits::new(max_depth)
    }

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).expect("encodes")
    }

    #[track_caller]
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
        let bytes = encode(&value);
        assert_eq!(from_slice::<T>(&bytes, &DecodeLimits::default()), Ok(value));
    }

    use crate::ByteBuf;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    /// Elements that take no bytes are counted: a length of ten bytes claiming 2^64 - 1 units
    /// fails at once (it took hours to count through), in a sequence, a map and nested ones;
    /// up to the limit they decode, and elements that take bytes are not counted.
    #[test]
    fn elements_that_take_no_bytes_are_bounded() {
        let endless = encode(&u64::MAX);
        let refused = Some(DecodeError::TooManyEmpty {
            max: MAX_EMPTY_ELEMENTS,
        });
        assert_eq!(from_slice::<Vec<()>>(&endless, &limits(8)).err(), refused);
        assert_eq!(from_slice::<Vec<Unit>>(&endless, &limits(8)).err(), refused);
        assert_eq!(
            from_slice::<HashMap<(), ()>>(&endless, &limits(8)).err(),
            refused
        );
        // Sequences of empty sequences: each inner one takes its length byte, the counts of
        // the units inside them add up across the value.
        let mut nested = encode(&3u8);
        for _ in 0..3 {
            nested.extend(encode(&(MAX_EMPTY_ELEMENTS as u64 / 2)));
        }
        assert_eq!(
            from_slice::<Vec<Vec<()>>>(&nested, &limits(8)).err(),
            refused
        );
        assert_eq!(
            from_slice::<Vec<()>>(&encode(&vec![(); MAX_EMPTY_ELEMENTS]), &limits(8)),
            Ok(vec![(); MAX_EMPTY_ELEMENTS])
        );
        let bytes = vec![7u8; 2 * MAX_EMPTY_ELEMENTS];
        round_trip(bytes.iter().map(|&b| u32::from(b)).collect::<Vec<u32>>());
        // One unit too many.
        let over = encode(&vec![(); MAX_EMPTY_ELEMENTS + 1]);
        assert_eq!(from_slice::<Vec<()>>(&over, &limits(8)).err(), refused);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(u64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct TupleStruct(i8, String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(u32, u32),
        Named { name: String, sides: Option<u8> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        b: bool,
        i8: i8,
        i16: i16,
        i32: i32,
        i64: i64,
        i128: i128,
        u8: u8,
        u16: u16,
        u32: u32,
        u64: u64,
        u128: u128,
        f32: f32,
        f64: f64,
        c: char,
        s: String,
        bytes: ByteBuf,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        tuple_struct: TupleStruct,
        tuple: (u8, String, Option<i32>),
        some: Option<Vec<u16>>,
        none: Option<String>,
        shapes: Vec<Shape>,
        hash: HashMap<String, Vec<u32>>,
        btree: BTreeMap<u32, Shape>,
    }

    #[test]
    fn round_trips() {
        round_trip(Everything {
            b: true,
            i8: -8,
            i16: -1600,
            i32: i32::MIN,
            i64: -(1 << 40),
            i128: i128::MIN + 1,
            u8: 255,
            u16: 60000,
            u32: u32::MAX,
            u64: 1 << 60,
            u128: u128::MAX,
            f32: 1.5,
            f64: -2.25e300,
            c: 'é',
            s: "hello, wörld".into(),
            bytes: ByteBuf::from(vec![0, 1, 2, 255]),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(7),
            tuple_struct: TupleStruct(-1, "t".into()),
            tuple: (1, "two".into(), Some(-3)),
            some: Some(vec![1, 2, 3]),
            none: None,
            shapes: vec![
                Shape::Empty,
                Shape::Circle(0.5),
                Shape::Rect(3, 4),
                Shape::Named {
                    name: "hex".into(),
                    sides: Some(6),
                },
                Shape::Named {
                    name: String::new(),
                    sides: None,
                },
            ],
            hash: HashMap::from([("a".into(), vec![1]), ("b".into(), vec![])]),
            btree: BTreeMap::from([(1, Shape::Empty), (2, Shape::Rect(1, 2))]),
        });
        round_trip(Shape::Rect(1, 2));
        round_trip(Some(Shape::Empty));
        round_trip(Option::<u8>::None);
        round_trip(vec![vec![1u8], vec![], vec![2, 3]]);
        round_trip((1u8, -2i64, "three".to_string(), [4u16; 3]));
        round_trip(String::from("just a string"));
        round_trip(());
    }

    #[test]
    fn borrows_from_the_input() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Borrowed<'a> {
            s: &'a str,
            b: &'a [u8],
        }
        let bytes = encode(&Borrowed {
            s: "borrowed",
            b: &[9, 8, 7],
        });
        let value: Borrowed<'_> = from_slice(&bytes, &DecodeLimits::default()).expect("decodes");
        assert_eq!(
            value,
            Borrowed {
                s: "borrowed",
                b: &[9, 8, 7]
            }
        );
        assert!(bytes.as_ptr_range().contains(&value.s.as_ptr()));
        assert!(bytes.as_ptr_range().contains(&value.b.as_ptr()));
    }

    /// What a visitor that accepts only whole byte strings saw: where the bytes were, how many,
    /// and whether they were borrowed for the input's lifetime.
    #[derive(Debug, PartialEq)]
    struct SeenBytes {
        at: usize,
        len: usize,
        borrowed: bool,
    }

    /// Accepts byte strings and nothing else (no sequence of `u8`s).
    struct BytesOnly;

    impl<'de> Visitor<'de> for BytesOnly {
        type Value = SeenBytes;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SeenBytes, E> {
            Ok(SeenBytes {
                at: v.as_ptr() as usize,
                len: v.len(),
                borrowed: false,
            })
        }
        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<SeenBytes, E> {
            Ok(SeenBytes {
                borrowed: true,
                ..self.visit_bytes::<E>(v)?
            })
        }
    }

    /// Asks for `deserialize_bytes` (`BYTE_BUF` false) or `deserialize_byte_buf` (true).
    struct AskBytes<const BYTE_BUF: bool>(SeenBytes);

    impl<'de, const BYTE_BUF: bool> Deserialize<'de> for AskBytes<BYTE_BUF> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let seen = if BYTE_BUF {
                d.deserialize_byte_buf(BytesOnly)?
            } else {
                d.deserialize_bytes(BytesOnly)?
            };
            Ok(Self(seen))
        }
    }

    #[test]
    fn byte_requests_reach_the_visitor_as_one_borrowed_block() {
        // A 1 MiB byte string: the guard must pass both byte requests through to postcard and
        // postcard's answer (one slice of the input, after the 3-byte length) back, never a
        // sequence: the visitor accepts nothing else. postcard lends the slice for the input's
        // lifetime to `deserialize_bytes` only.
        let bytes = encode(&ByteBuf::from(vec![5u8; 1024 * 1024]));
        let want = |borrowed| SeenBytes {
            at: bytes.as_ptr() as usize + 3,
            len: 1024 * 1024,
            borrowed,
        };
        let d = limits(0);
        let AskBytes::<false>(seen) = from_slice(&bytes, &d).expect("bytes");
        assert_eq!(seen, want(true));
        let AskBytes::<true>(seen) = from_slice(&bytes, &d).expect("byte_buf");
        assert_eq!(seen, want(false));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Nested {
        Leaf,
        Node(Box<Nested>),
    }

    /// `Nested` with `nodes` nodes, encoded by hand: `nodes + 1` levels.
    fn nested_bytes(nodes: usize) -> Vec<u8> {
        let mut bytes = vec![1; nodes];
        bytes.push(0);
        bytes
    }

    #[test]
    fn hand_built_encodings_match_postcard() {
        let three = Nested::Node(Box::new(Nested::Node(Box::new(Nested::Node(Box::new(
            Nested::Leaf,
        ))))));
        assert_eq!(encode(&three), nested_bytes(3));
        let d = DecodeLimits::default();
        assert_eq!(from_slice::<Nested>(&nested_bytes(3), &d), Ok(three));
        assert_eq!(encode(&Tree(vec![Tree(vec![Tree(vec![])])])), [1, 1, 0]);
        let list = List(Some(Box::new(List(Some(Box::new(List(None)))))));
        assert_eq!(encode(&list), [1, 1, 0]);
        let map = Map(BTreeMap::from([(
            0,
            Map(BTreeMap::from([(0, Map(BTreeMap::new()))])),
        )]));
        assert_eq!(encode(&map), [1, 0, 1, 0, 0]);
        let link = Link {
            next: Some(Box::new(Link { next: None })),
        };
        assert_eq!(encode(&link), [1, 0]);
        let chain = Chain::More(0, Box::new(Chain::More(0, Box::new(Chain::End))));
        assert_eq!(encode(&chain), [1, 0, 1, 0, 0]);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tree(Vec<Tree>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct List(Option<Box<List>>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Map(BTreeMap<u8, Map>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Link {
        next: Option<Box<Link>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Chain {
        End,
        More(u8, Box<Chain>),
    }

    /// Decodes `bytes` as a `T` with the default limits on a thread with a 256 KiB stack.
    fn decode_on_small_stack<T: DeserializeOwned + Debug>(
        bytes: Vec<u8>,
    ) -> Result<(), DecodeError> {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || from_slice::<T>(&bytes, &DecodeLimits::default()).map(drop))
            .expect("spawns")
            .join()
            .expect("does not panic")
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        const DEEP: usize = 100_000;
        let too_deep = Err(DecodeError::TooDeep {
            max_depth: DEFAULT_MAX_DEPTH,
        });
        assert_eq!(
            decode_on_small_stack::<Nested>(nested_bytes(DEEP)),
            too_deep
        );
        assert_eq!(decode_on_small_stack::<Tree>(nested_bytes(DEEP)), too_deep);
        assert_eq!(decode_on_small_stack::<List>(nested_bytes(DEEP)), too_deep);
        assert_eq!(decode_on_small_stack::<Link>(nested_bytes(DEEP)), too_deep);
        let pairs = [1, 0]
            .repeat(DEEP)
            .into_iter()
            .chain([0])
            .collect::<Vec<_>>();
        assert_eq!(decode_on_small_stack::<Map>(pairs.clone()), too_deep);
        assert_eq!(decode_on_small_stack::<Chain>(pairs), too_deep);
    }

    #[test]
    fn default_depth_fits_a_small_stack() {
        let max = DEFAULT_MAX_DEPTH as usize;
        assert_eq!(
            decode_on_small_stack::<Nested>(nested_bytes(max - 1)),
            Ok(())
        );
        assert_eq!(
            decode_on_small_stack::<Nested>(nested_bytes(max)),
            Err(DecodeError::TooDeep {
                max_depth: DEFAULT_MAX_DEPTH
            })
        );
    }

    #[track_caller]
    fn check_depth<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T, depth: u32) {
        let bytes = encode(&value);
        assert_eq!(
            from_slice::<T>(&bytes, &limits(depth)),
            Ok(value),
            "at the limit"
        );
        assert_eq!(
            from_slice::<T>(&bytes, &limits(depth - 1)),
            Err(DecodeError::TooDeep {
                max_depth: depth - 1
            }),
            "one over the limit"
        );
    }

    #[test]
    fn limit_is_exact() {
        for nodes in [0, 1, 10, 127] {
            let levels = nodes as u32 + 1;
            let bytes = nested_bytes(nodes);
            assert!(from_slice::<Nested>(&bytes, &limits(levels)).is_ok());
            assert_eq!(
                from_slice::<Nested>(&bytes, &limits(levels - 1)),
                Err(DecodeError::TooDeep {
                    max_depth: levels - 1
                })
            );
        }
        check_depth(vec![vec![vec![1u8]]], 3);
        check_depth(Some(Box::new(Some(Box::new(Some(5u8))))), 3);
        check_depth(Newtype(1), 1);
        check_depth((1u8, (2u8, 3u8)), 2);
        check_depth(BTreeMap::from([(1u8, vec![2u8])]), 2);
        check_depth(Shape::Rect(1, 2), 2);
        check_depth(
            Shape::Named {
                name: "n".into(),
                sides: Some(3),
            },
            3,
        );
        check_depth(vec![Shape::Circle(1.0)], 2);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Outer {
            before: u8,
            inner: Inner,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Inner {
            list: Vec<Option<u8>>,
        }
        check_depth(
            Outer {
                before: 0,
                inner: Inner {
                    list: vec![None, Some(1)],
                },
            },
            4,
        );
        // Scalars, strings, units and `None` cost nothing.
        check_depth(vec![(); 2], 1);
        assert_eq!(from_slice::<u32>(&encode(&5u32), &limits(0)), Ok(5));
        assert_eq!(
            from_slice::<String>(&encode(&"s"), &limits(0)),
            Ok("s".into())
        );
        assert_eq!(from_slice::<Option<u8>>(&[0], &limits(0)), Ok(None));
    }

    #[test]
    fn depth_is_released_between_siblings() {
        let wide = vec![vec![vec![7u8; 3]; 50]; 50];
        check_depth(wide, 3);
        let nested = (0..200)
            .map(|n| vec![Some(Box::new(n))])
            .collect::<Vec<_>>();
        check_depth(nested, 3);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&(1u32, "x"));
        bytes.extend([0, 0, 7]);
        assert_eq!(
            from_slice::<(u32, String)>(&bytes, &DecodeLimits::default()),
            Err(DecodeError::TrailingBytes { count: 3 })
        );
    }

    /// Plain limits (for a type the plan found flat) decode as the guard does: the same
    /// value, the same count of trailing bytes, and a malformed input refused the same way.
    #[test]
    fn plain_limits_decode_as_the_guard_does() {
        let guarded = DecodeLimits::default();
        let plain = guarded.plain();
        let value = (7u32, "seven".to_string(), Some(ByteBuf::from(vec![7; 40])));
        let bytes = encode(&value);
        let mut longer = bytes.clone();
        longer.extend([1, 2]);
        let cut = bytes.get(..bytes.len() - 1).unwrap_or_default();
        type Value = (u32, String, Option<ByteBuf>);
        for input in [&bytes[..], &longer[..], cut, &[0xff; 12][..]] {
            let with_guard = from_slice::<Value>(input, &guarded);
            let without = from_slice::<Value>(input, &plain);
            assert_eq!(with_guard, without, "{input:02x?}");
        }
        assert_eq!(from_slice::<Value>(&bytes, &plain), Ok(value));
        assert_eq!(
            from_slice::<Value>(&longer, &plain),
            Err(DecodeError::TrailingBytes { count: 2 })
        );
    }

    /// The postcard error that decoding `bytes` as a `T` fails with.
    #[track_caller]
    fn malformed<'a, T: Deserialize<'a> + Debug>(bytes: &'a [u8]) -> postcard::Error {
        match from_slice::<T>(bytes, &DecodeLimits::default()) {
            Err(DecodeError::Malformed(e)) => e,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed() {
        use postcard::Error as E;
        assert_eq!(malformed::<bool>(&[2]), E::DeserializeBadBool);
        assert_eq!(
            malformed::<Everything>(&[1, 2]),
            E::DeserializeUnexpectedEnd
        );
        assert_eq!(malformed::<Option<u8>>(&[]), E::DeserializeUnexpectedEnd);
        // Errors from deep inside come out unchanged.
        assert_eq!(
            malformed::<Vec<Vec<Option<bool>>>>(&[1, 1, 1, 9]),
            E::DeserializeBadBool
        );
        assert_eq!(
            malformed::<Vec<String>>(&[1, 2, 0xff, 0xfe]),
            E::DeserializeBadUtf8
        );
        assert_eq!(
            malformed::<Vec<u64>>(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            E::DeserializeBadVarint
        );
        // Errors made by visitors (here: no variant 9) are serde custom errors.
        assert_eq!(malformed::<Shape>(&[9]), E::SerdeDeCustom);
        assert_eq!(malformed::<Vec<Shape>>(&[1, 9]), E::SerdeDeCustom);
        // postcard is not self-describing.
        assert_eq!(malformed::<de::IgnoredAny>(&[0]), E::WontImplement);
        // A huge length prefix fails without allocating it.
        assert_eq!(
            malformed::<Vec<u8>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            E::DeserializeUnexpectedEnd
        );
    }

    /// What a map or sequence visitor is told: its size hint, and the `N` elements (or values of
    /// entries with `u8` keys) it then read.
    #[derive(Debug, PartialEq)]
    struct Told<E, const MAP: bool, const N: usize> {
        hint: Option<usize>,
        read: Vec<E>,
    }

    /// A map visitor that reads `N` entries, or a sequence visitor that reads `N` elements.
    type MapTold<E, const N: usize> = Told<E, true, N>;
    type SeqTold<E, const N: usize> = Told<E, false, N>;

    struct TellVisitor<E, const MAP: bool, const N: usize>(std::marker::PhantomData<E>);

    impl<'de, E: Deserialize<'de>, const MAP: bool, const N: usize> Visitor<'de>
        for TellVisitor<E, MAP, N>
    {
        type Value = Told<E, MAP, N>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map or a sequence")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let hint = map.size_hint();
            let mut read = Vec::new();
            for _ in 0..N {
                let (_, value) = map
                    .next_entry::<u8, E>()?
                    .ok_or_else(|| de::Error::custom("map ended early"))?;
                read.push(value);
            }
            Ok(Told { hint, read })
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let hint = seq.size_hint();
            let mut read = Vec::new();
            for _ in 0..N {
                let element = seq
                    .next_element::<E>()?
                    .ok_or_else(|| de::Error::custom("sequence ended early"))?;
                read.push(element);
            }
            Ok(Told { hint, read })
        }
    }

    impl<'de, E: Deserialize<'de>, const MAP: bool, const N: usize> Deserialize<'de>
        for Told<E, MAP, N>
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let visitor = TellVisitor(std::marker::PhantomData);
            if MAP {
                d.deserialize_map(visitor)
            } else {
                d.deserialize_seq(visitor)
            }
        }
    }

    /// The largest length a `u32` varint holds: 4,294,967,295.
    const HUGE_LEN: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

    #[test]
    fn size_hints_never_exceed_the_bytes_left() {
        let d = DecodeLimits::default();
        // A map claiming four billion entries, followed by three (six bytes): the visitor, and
        // so serde's `HashMap`, which reserves what it is told, is told at most six.
        let bytes = [&HUGE_LEN[..], &[1, 2, 3, 4, 5, 6]].concat();
        let told: MapTold<u8, 3> = from_slice(&bytes, &d).expect("three entries");
        assert_eq!(
            told,
            Told {
                hint: Some(6),
                read: vec![2, 4, 6]
            }
        );
        // The same for sequences (postcard withholds an impossible hint itself).
        let told: SeqTold<u8, 6> = from_slice(&bytes, &d).expect("six elements");
        assert!(told.hint.is_none_or(|n| n <= 6), "{told:?}");
        assert_eq!(told.read, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn open_containers_share_the_bytes_left() {
        let d = DecodeLimits::default();
        // A map claiming four billion entries, whose first value is a map claiming as many,
        // followed by ten entries (twenty bytes). The outer map is told 26 (all the bytes after
        // its length) and has promised 25 more entries after the first, so the inner map,
        // with 20 bytes left, is told nothing: together they are told at most the bytes left.
        let mut bytes = HUGE_LEN.to_vec();
        bytes.push(7); // the outer map's first key; its value:
        bytes.extend(HUGE_LEN);
        bytes.extend([0; 20]);
        let told: MapTold<MapTold<u8, 10>, 1> = from_slice(&bytes, &d).expect("nested maps");
        assert_eq!(told.hint, Some(26));
        assert_eq!(told.read[0].hint, Some(0));
        assert_eq!(told.read[0].read, [0; 10]);
        // The same with sequences inside a map.
        let mut bytes = HUGE_LEN.to_vec();
        bytes.push(7);
        bytes.push(10);
        bytes.extend([0; 10]);
        let told: MapTold<SeqTold<u8, 10>, 1> = from_slice(&bytes, &d).expect("seq in map");
        assert_eq!(told.hint, Some(12));
        assert_eq!(told.read[0].hint, Some(0));
    }

    #[test]
    fn honest_size_hints_pass_unchanged() {
        let d = DecodeLimits::default();
        // Also when the elements fill the input exactly.
        let told: MapTold<u8, 3> = from_slice(&[3, 1, 2, 3, 4, 5, 6], &d).expect("map");
        assert_eq!(told.hint, Some(3));
        let told: SeqTold<u8, 6> = from_slice(&[6, 1, 2, 3, 4, 5, 6], &d).expect("seq");
        assert_eq!(told.hint, Some(6));
        // Nested: {7: {1: 2, 3: 4}, 8: {5: 6, 7: 8}}, every hint exact.
        let bytes = [2, 7, 2, 1, 2, 3, 4, 8, 2, 5, 6, 7, 8];
        let told: MapTold<MapTold<u8, 2>, 2> = from_slice(&bytes, &d).expect("nested");
        let hints = told.read.iter().map(|t| t.hint).collect::<Vec<_>>();
        assert_eq!((told.hint, hints), (Some(2), vec![Some(2), Some(2)]));
        // A tuple of three sequences of two: [[1, 2], [3, 4], [5, 6]].
        let bytes = [2, 1, 2, 2, 3, 4, 2, 5, 6];
        type Three = (SeqTold<u8, 2>, SeqTold<u8, 2>, SeqTold<u8, 2>);
        let (a, b, c): Three = from_slice(&bytes, &d).expect("tuple");
        assert_eq!([a.hint, b.hint, c.hint], [Some(2); 3]);
        // Larger ones too, followed by more data.
        let map: BTreeMap<u8, u8> = (0..200).map(|i| (i, i)).collect();
        let bytes = encode(&(vec![map], vec![5u8; 1000]));
        let (told, rest): (SeqTold<MapTold<u8, 200>, 1>, Vec<u8>) =
            from_slice(&bytes, &d).expect("big map");
        assert_eq!((told.hint, told.read[0].hint), (Some(1), Some(200)));
        assert_eq!(rest, [5; 1000]);
    }

    #[test]
    fn huge_claimed_map_is_malformed() {
        let bytes = [&HUGE_LEN[..], &[1, 2, 3]].concat();
        assert_eq!(
            malformed::<HashMap<u64, u64>>(&bytes),
            postcard::Error::DeserializeUnexpectedEnd
        );
        assert_eq!(
            malformed::<Vec<HashMap<u8, String>>>(&[&[1][..], &HUGE_LEN].concat()),
            postcard::Error::DeserializeUnexpectedEnd
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let d = limits(16);
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes = (0..len).map(|_| next() as u8 % 4).collect::<Vec<_>>();
            // Any outcome is fine as long as it is not a panic.
            let _ = from_slice::<Everything>(&bytes, &d);
            let _ = from_slice::<Vec<Shape>>(&bytes, &d);
            let _ = from_slice::<Nested>(&bytes, &d);
            let _ = from_slice::<Map>(&bytes, &d);
            let _ = from_slice::<Chain>(&bytes, &d);
        }
    }

    #[test]
    fn converts_to_wire_errors() {
        let wire = |e: DecodeError| WireDecodeError::from(&e);
        assert_eq!(
            wire(DecodeError::TooDeep { max_depth: 1 }),
            WireDecodeError::TooDeep
        );
        assert_eq!(
            wire(DecodeError::TrailingBytes { count: 1 }),
            WireDecodeError::TrailingBytes
        );
        assert_eq!(
            wire(DecodeError::Malformed(postcard::Error::DeserializeBadBool)),
            WireDecodeError::Malformed
        );
        assert_eq!(DecodeLimits::default().max_depth, 128);
    }
}
