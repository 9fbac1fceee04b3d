//! The store the tests of streams from the client share: a service that takes streams, and what
//! its handlers report to the tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use rpc_core::{ByteBuf, ServerConfig, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::common;

/// Why the store refuses an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UploadError {
    /// The upload has no name.
    NoName,
}

/// A store that takes streams from its clients.
#[rpc_core::service]
pub trait Store {
    /// Stores the chunks; answers with the bytes stored once the client's stream ends.
    async fn upload(&self, name: String, chunks: Stream<ByteBuf>) -> Result<u64, UploadError>;
    /// Takes `count` numbers, then drops the rest of the stream and answers with them.
    async fn take(&self, count: u32, numbers: Stream<u32>) -> Vec<u32>;
    /// Takes one number, reports it, then waits for the test before taking the rest.
    async fn hold(&self, numbers: Stream<u32>) -> u32;
    /// Every message back, prefixed with the room, as they come.
    async fn chat(&self, room: String, outgoing: Stream<String>) -> Stream<String>;
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
}

/// What the handlers report to the tests.
#[derive(Default)]
pub struct Seen {
    /// Handlers dropped before they finished.
    pub dropped: AtomicU32,
    /// Items taken by `hold` before it waits.
    pub held: AtomicU32,
    pub changed: Notify,
    pub release: Notify,
}

impl Seen {
    pub async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        common::until_notified(what, &self.changed, || done(self)).await;
    }
}

/// Counts a drop that happens before `finished`.
struct DropGuard {
    seen: Arc<Seen>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.dropped.fetch_add(1, Ordering::SeqCst);
            self.seen.changed.notify_waiters();
        }
    }
}

pub struct StoreImpl(pub Arc<Seen>);

impl Store for StoreImpl {
    async fn upload(&self, name: String, mut chunks: Stream<ByteBuf>) -> Result<u64, UploadError> {
        let mut guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        if name.is_empty() {
            guard.finished = true;
            return Err(UploadError::NoName);
        }
        let mut stored = 0;
        while let Some(chunk) = chunks.next().await {
            stored += chunk.len() as u64;
        }
        guard.finished = true;
        Ok(stored)
    }

    async fn take(&self, count: u32, numbers: Stream<u32>) -> Vec<u32> {
        numbers.take(count as usize).collect().await
    }

    async fn hold(&self, mut numbers: Stream<u32>) -> u32 {
        let mut guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        let release = self.0.release.notified();
        let first = numbers.next().await.unwrap_or_default();
        self.0.held.store(first + 1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        release.await;
        let rest = numbers.count().await as u32;
        guard.finished = true;
        1 + rest
    }

    async fn chat(&self, room: String, outgoing: Stream<String>) -> Stream<String> {
        let guard = DropGuard {
            seen: Arc::clone(&self.0),
            finished: false,
        };
        Stream::new(outgoing.map(move |message| {
            let _ = &guard;
            format!("{room}: {message}")
        }))
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// A store served on an endpoint of its own.
pub type Served = common::Served<Seen>;

/// Serves the store with `config`.
pub fn serve(config: &ServerConfig) -> Served {
    Served::start(|seen| StoreServer::new(StoreImpl(seen)), config)
}

pub fn chunks(count: usize, size: usize) -> impl futures_util::Stream<Item = ByteBuf> + Send {
    futures_util::stream::iter((0..count).map(move |i| ByteBuf::from(vec![i as u8; size])))
}
