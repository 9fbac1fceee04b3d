//! The depth-guarded decoder (through `rpc_core::__private::decode_args`, the path generated
//! code takes) on a recursive type, with a small limit on a small stack.
//!
//! The first byte picks the limit (0 to 31 levels); the rest is decoded three ways:
//! 1. as `Nested` with that limit, on a thread with a 256 KiB stack;
//! 2. as `Nested` by postcard alone, with no limit, on a thread with a large stack;
//! 3. as `Shadow`, which has `Nested`'s encoding but keeps every map entry (a map drops
//!    repeated keys, which may hide a deep value), by the guarded decoder with no effective
//!    limit, on the large stack.
//!
//! Oracles:
//! * decoding with a small limit never overflows the 256 KiB stack (a stack overflow aborts
//!   the process, which libFuzzer reports);
//! * the guard changes nothing but the depth: (3) succeeds exactly where (2) does, and fails
//!   with `TrailingBytes { count }` or `Malformed` where (2) leaves `count` bytes or fails;
//! * the limit is exact: where (3) decodes a value of depth `k` (counted as the decoder's docs
//!   count), (1) returns the value of (2) if `k <= limit` and `TooDeep { max_depth: limit }`
//!   otherwise; a successful (1) is never deeper than the limit; where (3) fails, (1) fails with
//!   the same error or `TooDeep`.
#![no_main]

use std::fmt;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rpc_core::__private::{decode_args, DecodeLimits, DispatchError};
use rpc_core::DecodeError;
use rpc_fuzz::Nested;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The stack of the thread that decodes with the small limit.
const SMALL_STACK: usize = 256 * 1024;
/// The stack of the thread that decodes without a limit (a level costs well under 8 KiB even
/// with sanitizers, and an input of `n` bytes nests at most about `n` levels).
const LARGE_STACK: usize = 512 * 1024 * 1024;
/// The largest limit tried.
const MAX_LIMIT: u32 = 31;

/// `Nested`'s wire format, keeping every map entry in order.
#[derive(Debug, Deserialize)]
enum Shadow {
    Leaf,
    Node(Box<Shadow>),
    Map(Entries),
    List(Vec<Shadow>),
    Pair(Box<Shadow>, Box<Shadow>),
    Opt(Option<Box<Shadow>>),
    Rec { inner: Box<Shadow> },
}

/// A map's entries, repeated keys included.
#[derive(Debug)]
struct Entries(Vec<(u8, Shadow)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                // As serde's own maps do: never more than the hint, and never much up front.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl Shadow {
    /// The depth as the decoder counts it (see `Nested::depth`), over every entry.
    fn depth(&self) -> u32 {
        match self {
            Shadow::Leaf => 1,
            Shadow::Node(inner) => 1 + inner.depth(),
            Shadow::Map(Entries(entries)) => {
                2 + entries.iter().map(|(_, v)| v.depth()).max().unwrap_or(0)
            }
            Shadow::List(list) => 2 + list.iter().map(Shadow::depth).max().unwrap_or(0),
            Shadow::Pair(a, b) => 2 + a.depth().max(b.depth()),
            Shadow::Opt(None) => 1,
            Shadow::Opt(Some(inner)) => 2 + inner.depth(),
            Shadow::Rec { inner } => 2 + inner.depth(),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread with a stack of `size` that runs jobs one at a time.
fn worker(size: usize, name: &str) -> Mutex<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(size)
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .expect("spawn worker");
    Mutex::new(tx)
}

/// Runs `f` on the worker and returns its result.
fn run_on<T: Send + 'static>(
    worker: &Mutex<mpsc::Sender<Job>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    worker
        .lock()
        .expect("worker lock")
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("worker alive");
    rx.recv().expect("worker answers")
}

static SMALL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
static LARGE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn limits(max_depth: u32) -> DecodeLimits {
    DecodeLimits::new(max_depth)
}

/// The decoder's error, from what `decode_args` returns.
fn decode_error<T>(result: Result<T, DispatchError>) -> Result<T, DecodeError> {
    result.map_err(|error| match error {
        DispatchError::BadArguments(error) => error,
        other => panic!("decode_args failed with {other:?}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let limit = u32::from(first) % (MAX_LIMIT + 1);
    let small = SMALL.get_or_init(|| worker(SMALL_STACK, "small-stack"));
    let large = LARGE.get_or_init(|| worker(LARGE_STACK, "large-stack"));

    let input = bytes.to_vec();
    let guarded = run_on(small, move || {
        decode_error(decode_args::<Nested>(&input, &limits(limit)))
    });
    let input = bytes.to_vec();
    let (plain, shadow) = run_on(large, move || {
        let plain =
            postcard::take_from_bytes::<Nested>(&input).map(|(value, rest)| (value, rest.len()));
        let shadow = decode_error(decode_args::<Shadow>(&input, &limits(u32::MAX)));
        (plain, shadow.map(|shadow| shadow.depth()))
    });

    if let Ok(value) = &guarded {
        assert!(
            value.depth() <= limit,
            "decoded a value {} deep with a limit of {limit}",
            value.depth()
        );
    }
    match (&plain, &shadow) {
        (Ok((_, 0)), Ok(_)) => {}
        (Ok((_, rest)), Err(DecodeError::TrailingBytes { count })) if count == rest => {}
        (Err(_), Err(DecodeError::Malformed(_))) => {}
        (plain, shadow) => panic!("postcard alone gave {plain:?}, the guarded decoder {shadow:?}"),
    }
    match (shadow, guarded) {
        (Ok(depth), Ok(value)) if depth <= limit => {
            let (want, _) = plain.expect("postcard decodes it too");
            assert_eq!(value, want, "the guarded decoder's value");
        }
        (Ok(depth), Err(DecodeError::TooDeep { max_depth })) if depth > limit => {
            assert_eq!(max_depth, limit, "the limit reported");
        }
        (Err(_), Err(DecodeError::TooDeep { max_depth })) => {
            assert_eq!(max_depth, limit, "the limit reported");
        }
        (Err(want), Err(got)) => assert_eq!(got, want, "the error with a small limit"),
        (shadow, guarded) => panic!(
            "with a limit of {limit}: {guarded:?}; without a limit the value is {shadow:?} deep"
        ),
    }
});
