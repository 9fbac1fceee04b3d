//! What the fuzz targets share: a reference frame parser, a recursive type with its nesting
//! depth as the decoder counts it, a test service whose handlers count themselves, and a
//! current-thread runtime with paused time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::protocol::{Header, LEN_PREFIX, MAGIC, PROTOCOL_VERSION};
use rpc_core::Client;
use serde::{Deserialize, Serialize};

/// How a byte stream ends, by the reference parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefEnd {
    /// At a frame boundary.
    Clean,
    /// Inside a frame: `have` bytes of it (prefix included) of the `need` it takes (4 while the
    /// prefix itself is incomplete).
    Partial { have: usize, need: usize },
    /// A length above the maximum.
    TooLarge { len: u32, max: u32 },
    /// A length of zero.
    Empty,
}

/// A frame found by the reference parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefFrame {
    /// Offset of the frame's length prefix in the stream.
    pub start: usize,
    /// Offset of the payload.
    pub payload: usize,
    /// Length of the payload.
    pub len: usize,
}

impl RefFrame {
    /// The payload's bytes.
    pub fn bytes<'a>(&self, stream: &'a [u8]) -> &'a [u8] {
        &stream[self.payload..self.payload + self.len]
    }
}

/// Splits `stream` into `| len: u32 LE | payload |` frames the plain way: the frames before
/// the first problem, and how the stream ends. A length is checked against `max` first, then
/// against zero, then the payload must be all there.
pub fn parse_frames(stream: &[u8], max: u32) -> (Vec<RefFrame>, RefEnd) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.is_empty() {
            return (frames, RefEnd::Clean);
        }
        if rest.len() < LEN_PREFIX {
            let end = RefEnd::Partial {
                have: rest.len(),
                need: LEN_PREFIX,
            };
            return (frames, end);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > max {
            return (frames, RefEnd::TooLarge { len, max });
        }
        if len == 0 {
            return (frames, RefEnd::Empty);
        }
        let need = LEN_PREFIX + len as usize;
        if rest.len() < need {
            let end = RefEnd::Partial {
                have: rest.len(),
                need,
            };
            return (frames, end);
        }
        frames.push(RefFrame {
            start: at,
            payload: at + LEN_PREFIX,
            len: len as usize,
        });
        at += need;
    }
}

/// `payload` with its length prefix.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame fits u32");
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// A header and a body, encoded as one frame.
pub fn message<T: Serialize + ?Sized>(header: &Header, body: &T) -> Vec<u8> {
    let mut payload = postcard::to_stdvec(header).expect("header encodes");
    payload.extend(postcard::to_stdvec(body).expect("body encodes"));
    frame(&payload)
}

/// A correct hello for the [`Target`] service, as a frame.
pub fn hello_frame(max_frame: u32) -> Vec<u8> {
    let service = <TargetClient as Client>::SERVICE;
    frame(
        &postcard::to_stdvec(&Header::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            service: service.name.to_owned(),
            fingerprint: service.fingerprint(),
            max_frame,
            callbacks: 0,
        })
        .expect("hello encodes"),
    )
}

/// A recursive type, for nesting attacks: newtype, tuple and struct variants, a map, a
/// sequence and an option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nested {
    Leaf,
    Node(Box<Nested>),
    Map(HashMap<u8, Nested>),
    List(Vec<Nested>),
    Pair(Box<Nested>, Box<Nested>),
    Opt(Option<Box<Nested>>),
    Rec { inner: Box<Nested> },
}

impl Nested {
    /// How deep the value nests, counted as the decoder documents it: every enum, map,
    /// sequence and `Some` is one level, and the fields of a tuple or struct variant one more
    /// below their enum; `Box`, units, `None` and scalars cost nothing.
    pub fn depth(&self) -> u32 {
        match self {
            Nested::Leaf => 1,
            Nested::Node(inner) => 1 + inner.depth(),
            Nested::Map(map) => 2 + map.values().map(Nested::depth).max().unwrap_or(0),
            Nested::List(list) => 2 + list.iter().map(Nested::depth).max().unwrap_or(0),
            Nested::Pair(a, b) => 2 + a.depth().max(b.depth()),
            Nested::Opt(None) => 1,
            Nested::Opt(Some(inner)) => 2 + inner.depth(),
            Nested::Rec { inner } => 2 + inner.depth(),
        }
    }
}

/// A typed application error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero,
}

/// Handlers alive now (started and not yet finished or dropped).
static LIVE_HANDLERS: AtomicUsize = AtomicUsize::new(0);

/// How many handlers are alive: started and neither finished nor dropped.
pub fn live_handlers() -> usize {
    LIVE_HANDLERS.load(Ordering::SeqCst)
}

/// Counts a handler as alive from its start until it is dropped.
struct Live;

impl Live {
    fn enter() -> Self {
        LIVE_HANDLERS.fetch_add(1, Ordering::SeqCst);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE_HANDLERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The service the engines serve and call under fuzzing.
#[rpc_core::service]
pub trait Target {
    /// Answers at once.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// A typed error.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Echoes bytes.
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// The depth of a nested value.
    async fn depth(&self, value: Nested) -> u32;
    /// Waits, so that the call moves to a task of its own.
    async fn sleep(&self, ms: u32) -> u32;
    /// Records nothing; one-way.
    #[rpc(oneway)]
    async fn record(&self, line: String);
    /// Waits; one-way.
    #[rpc(oneway)]
    async fn pause(&self, ms: u8);
}

/// The handlers of [`Target`]; each counts itself in [`live_handlers`].
pub struct TargetImpl;

impl Target for TargetImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        let _live = Live::enter();
        a.wrapping_add(b)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        let _live = Live::enter();
        a.checked_div(b).ok_or(MathError::DivisionByZero)
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        let _live = Live::enter();
        data
    }

    async fn depth(&self, value: Nested) -> u32 {
        let _live = Live::enter();
        value.depth()
    }

    async fn sleep(&self, ms: u32) -> u32 {
        let _live = Live::enter();
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
        ms
    }

    async fn record(&self, line: String) {
        let _live = Live::enter();
        drop(line);
    }

    async fn pause(&self, ms: u8) {
        let _live = Live::enter();
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    }
}

/// A current-thread runtime whose clock is paused: timers fire as soon as every task waits,
/// so deadlines and timeouts are exact and cost no wall-clock time.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Lets every task that can run do so, and the paused clock move on by `virtual_time`.
pub async fn settle(virtual_time: Duration) {
    tokio::time::sleep(virtual_time).await;
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}
