//! 200 peers that claim a maximum-size frame and stall cost little memory and are dropped.
//! (They stall after their handshake: a hello is refused from its prefix past 64 KiB.)
//!
//! This file is its own test binary with a single test, because it counts every allocation of
//! the process.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{within, RawPeer, TestServer};
use rpc_core::protocol::DEFAULT_MAX_FRAME;
use rpc_core::ServerConfig;

/// Counts the bytes allocated now and the peak since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PEERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peers_claiming_the_maximum_cost_little_and_are_dropped() {
    let server =
        TestServer::start_with(ServerConfig::new().frame_timeout(Duration::from_millis(1500)));
    server.assert_serving().await;
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);

    let mut peers = Vec::with_capacity(PEERS);
    for _ in 0..PEERS {
        let mut peer = RawPeer::handshake(&server.address).await;
        // The prefix of a maximum-size frame, a few bytes of it, then nothing more.
        let mut start = DEFAULT_MAX_FRAME.to_le_bytes().to_vec();
        start.extend_from_slice(&[0; 16]);
        if cfg!(windows) {
            // A pipe message is written whole: one that ends inside its frame is refused at once
            // (the message boundary disagrees with the length), so the peer cannot stall there.
            peer.send_raw(&start).await.expect("send");
        } else {
            peer.send_raw(&start[..4]).await.expect("send prefix");
            peer.send_raw(&start[4..]).await.expect("send");
        }
        peers.push(peer);
    }
    // A good client is served while they stall.
    server.assert_serving().await;

    // Every stalled peer is dropped once its frame's time is up.
    for peer in &mut peers {
        within("the server to drop a stalled peer", peer.until_closed()).await;
    }
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let claimed = PEERS * DEFAULT_MAX_FRAME as usize;
    println!("peak extra heap with {PEERS} stalled peers: {peak} bytes (they claimed {claimed})");
    // Had each claimed frame been reserved, this would be 3.2 GB. The server's reader sets
    // aside at most eight times what a peer sent of its frame, counted as at least a 16 KiB
    // chunk (128 KiB); the rest is the connection itself, both ends of it in this process (a
    // Windows pipe has the read and write buffers of each end besides).
    let connection = if cfg!(windows) { 32 * 1024 } else { 16 * 1024 };
    let allowed_per_peer = 128 * 1024 + connection;
    assert!(
        peak < PEERS * allowed_per_peer,
        "peak {peak} bytes for {PEERS} stalled peers"
    );
    server.assert_serving().await;
}
