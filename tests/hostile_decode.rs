//! Lengths that a peer claims inside its arguments cost the server no memory beyond the bytes
//! it sent: a map or sequence that claims four billion entries gets a typed error, and the
//! memory the server sets aside meanwhile is measured.
//!
//! The server and the raw peer run on one thread (a current-thread runtime), and a counting
//! allocator records that thread's peak, so other tests of this binary do not disturb the
//! figures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use rpc_core::protocol::{Header, ReplyStatus, WireDecodeError, WireError};
use rpc_core::{Client, ClientConfig, ServerConfig};
use rpc_transport::pipes::{connect_pipes, serve_pipes};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// Counts the bytes allocated by each thread, and the thread's peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed on to the system allocator unchanged; the counting beside it
// uses const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `alloc` are passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees for `dealloc` are passed on.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees for `realloc` are passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `future` and returns its output with the most this thread had allocated at once
/// meanwhile, above what it had allocated before.
async fn peak_during<F: std::future::Future>(future: F) -> (F::Output, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let output = future.await;
    let peak = PEAK.with(Cell::get).saturating_sub(before);
    (output, usize::try_from(peak).unwrap_or(0))
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A tree of maps: each level maps bytes to the next level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree(HashMap<u8, Tree>);

/// Sums maps and measures trees.
#[rpc_core::service]
pub trait Tally {
    /// The sum of a map's keys and values.
    async fn sum(&self, map: HashMap<u64, u64>) -> u64;
    /// How many levels a tree has below its root, along its first entries.
    async fn depth(&self, tree: Tree) -> u32;
}

struct TallyImpl;

impl Tally for TallyImpl {
    async fn sum(&self, map: HashMap<u64, u64>) -> u64 {
        map.iter()
            .fold(0u64, |sum, (k, v)| sum.wrapping_add(*k).wrapping_add(*v))
    }

    async fn depth(&self, tree: Tree) -> u32 {
        let mut depth = 0;
        let mut node = &tree;
        while let Some(next) = node.0.values().next() {
            depth += 1;
            node = next;
        }
        depth
    }
}

fn method_id(name: &str) -> u32 {
    <TallyClient as Client>::SERVICE
        .methods
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .expect("method exists")
}

/// How long a test waits for an answer before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A peer that speaks the protocol by hand over one end of an in-memory byte stream.
struct RawPeer {
    reader: ReadHalf<DuplexStream>,
    writer: WriteHalf<DuplexStream>,
}

impl RawPeer {
    /// Serves a `Tally` on a new in-memory connection and completes the handshake on it.
    async fn serve() -> Self {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (read, write) = tokio::io::split(theirs);
        tokio::spawn(serve_pipes(
            read,
            write,
            TallyServer::new(TallyImpl),
            &ServerConfig::default(),
        ));
        let (reader, writer) = tokio::io::split(ours);
        let mut peer = Self { reader, writer };
        let service = <TallyClient as Client>::SERVICE;
        peer.send(&postcard::to_stdvec(&common::hello(service)).expect("encode hello"))
            .await;
        match peer.recv().await {
            (Header::Welcome { .. }, _) => peer,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    async fn send(&mut self, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("frame fits a u32");
        self.writer
            .write_all(&len.to_le_bytes())
            .await
            .expect("send length");
        self.writer.write_all(payload).await.expect("send frame");
        self.writer.flush().await.expect("flush");
    }

    /// The next frame from the server: its header and body.
    async fn recv(&mut self) -> (Header, Vec<u8>) {
        let read = async {
            let mut len = [0; 4];
            self.reader
                .read_exact(&mut len)
                .await
                .expect("frame length");
            let mut frame = vec![0; u32::from_le_bytes(len) as usize];
            self.reader.read_exact(&mut frame).await.expect("frame");
            frame
        };
        let frame = tokio::time::timeout(PATIENCE, read)
            .await
            .expect("a frame from the server in time");
        let (header, body) = postcard::take_from_bytes::<Header>(&frame).expect("server header");
        (header, body.to_vec())
    }

    /// A call frame: `Call` header then `args`, the encoded argument tuple.
    fn call(id: u64, method: &str, args: &[u8]) -> Vec<u8> {
        let mut frame = postcard::to_stdvec(&Header::Call {
            id,
            method: method_id(method),
            deadline_us: None,
        })
        .expect("encode call");
        frame.extend_from_slice(args);
        frame
    }

    /// Sends a prepared call frame and returns the reply's status and body.
    async fn reply(&mut self, id: u64, frame: &[u8]) -> (ReplyStatus, Vec<u8>) {
        self.send(frame).await;
        match self.recv().await {
            (Header::Reply { id: got, status }, body) if got == id => (status, body),
            other => panic!("expected the reply to call {id}, got {other:?}"),
        }
    }
}

/// The largest length a `u32` varint holds: 4,294,967,295.
const HUGE_LEN: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

fn malformed() -> ReplyStatus {
    ReplyStatus::Failed(WireError::BadArguments(WireDecodeError::Malformed))
}

/// A `Tree` argument of `levels` maps, each claiming four billion entries and holding the key
/// of the next, then `padding` zero bytes (each pair an entry `0 => {}` of the innermost map).
fn claimed_tree(levels: usize, padding: usize) -> Vec<u8> {
    let mut args = Vec::new();
    for _ in 0..levels {
        args.extend(HUGE_LEN);
        args.push(0);
    }
    args.resize(args.len() + padding, 0);
    args
}

#[tokio::test]
async fn claimed_map_lengths_cost_no_memory() {
    let mut peer = RawPeer::serve().await;
    // A correct call first, so that the connection's buffers exist before measuring.
    let args = postcard::to_stdvec(&(HashMap::from([(1u64, 2u64), (3, 4)]),)).expect("args");
    let (status, body) = peer.reply(1, &RawPeer::call(1, "sum", &args)).await;
    assert_eq!(status, ReplyStatus::Ok);
    assert_eq!(postcard::from_bytes::<u64>(&body), Ok(10));

    // A `HashMap<u64, u64>` claiming four billion entries, with one present. serde's own cap
    // alone would set aside 65,536 entries (2 MiB).
    let mut args = HUGE_LEN.to_vec();
    args.extend([1, 2]);
    let frame = RawPeer::call(2, "sum", &args);
    let (reply, peak) = peak_during(peer.reply(2, &frame)).await;
    assert_eq!(reply.0, malformed());
    assert!(
        peak < 256 * KIB,
        "a {}-byte call peaked at {peak} bytes",
        frame.len()
    );

    // 60 nested maps, each claiming four billion entries: 364 bytes. Each level on its own
    // would set aside 18,724 entries (1.8 MiB), 107 MiB in all; capped at the bytes left, each
    // would still set aside 512 entries, 1 MiB in all.
    let frame = RawPeer::call(3, "depth", &claimed_tree(60, 0));
    let (reply, peak) = peak_during(peer.reply(3, &frame)).await;
    assert_eq!(reply.0, malformed());
    assert!(
        peak < 256 * KIB,
        "a {}-byte call peaked at {peak} bytes",
        frame.len()
    );

    // The same with 512 KiB after it, so that the bytes left do not limit each level (107 MiB
    // again if each level were capped on its own): together the levels are told of no more
    // entries than there are bytes left. What remains is the frame itself and one level's
    // reservation (2.5 MiB in all).
    let frame = RawPeer::call(4, "depth", &claimed_tree(60, 512 * 1024));
    let (reply, peak) = peak_during(peer.reply(4, &frame)).await;
    assert_eq!(reply.0, malformed());
    assert!(
        peak < 8 * MIB,
        "a {}-byte call peaked at {peak} bytes",
        frame.len()
    );

    // The connection still serves.
    let tree = Tree(HashMap::from([(
        1,
        Tree(HashMap::from([(2, Tree(HashMap::new()))])),
    )]));
    let args = postcard::to_stdvec(&(tree,)).expect("args");
    let (status, body) = peer.reply(5, &RawPeer::call(5, "depth", &args)).await;
    assert_eq!(status, ReplyStatus::Ok);
    assert_eq!(postcard::from_bytes::<u32>(&body), Ok(2));
}

#[tokio::test]
async fn typed_client_agrees_with_the_raw_encoding() {
    // The raw calls above rely on the argument tuple being the body; a real client shows the
    // service answers the same calls.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(theirs);
    tokio::spawn(serve_pipes(
        read,
        write,
        TallyServer::new(TallyImpl),
        &ServerConfig::default(),
    ));
    let (read, write) = tokio::io::split(ours);
    let tally: TallyClient = connect_pipes(read, write, &ClientConfig::default())
        .await
        .expect("connect");
    let map = (0..1000u64).map(|i| (i, 2 * i)).collect::<HashMap<_, _>>();
    assert_eq!(tally.sum(map).await.expect("sum"), 3 * 999 * 1000 / 2);
    let tree = Tree(HashMap::from([(9, Tree(HashMap::new()))]));
    assert_eq!(tally.depth(tree).await.expect("depth"), 1);
}
