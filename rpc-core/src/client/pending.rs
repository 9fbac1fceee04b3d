//! The calls in flight of a client connection: who waits for which reply, and until when.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::deadlines::Moved;
use crate::client::upload::Outgoing;
use crate::error::RpcError;
use crate::protocol::ReplyStatus;
use crate::stream::arrived::Arrived;
use crate::stream::credit::Granted;
use crate::stream::parts::Partial;

/// A reply waiting for its caller.
pub(crate) struct Reply {
    pub(crate) status: ReplyStatus,
    pub(crate) frame: Bytes,
    pub(crate) body_at: usize,
}

impl Reply {
    pub(super) fn body(&self) -> &[u8] {
        self.frame.get(self.body_at..).unwrap_or_default()
    }
}

/// A call in flight: waiting for its reply, or answered and not yet taken by its caller.
pub(super) struct Waiter {
    pub(super) state: CallState,
    pub(super) deadline: Option<Instant>,
}

pub(super) enum CallState {
    /// No reply yet; the waker of the caller once it has waited.
    Waiting(Option<Waker>),
    /// The reply, or why there is none (the deadline passed), for the caller to take.
    Done(Result<Reply, RpcError>),
}

impl Waiter {
    /// Gives the call its outcome if it is still waiting; returns the caller's waker.
    pub(super) fn finish(&mut self, outcome: Result<Reply, RpcError>) -> Option<Waker> {
        match std::mem::replace(&mut self.state, CallState::Done(outcome)) {
            CallState::Waiting(waker) => waker,
            done @ CallState::Done(_) => {
                self.state = done;
                None
            }
        }
    }

    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.state, CallState::Waiting(_))
    }
}

#[derive(Default)]
pub(crate) struct Pending {
    pub(super) calls: HashMap<u64, Waiter, BuildHasherDefault<IdHasher>>,
    /// Set once the connection is gone; every later call fails with it.
    pub(super) closed: Option<RpcError>,
    /// When the reader task checks deadlines next: no later than the earliest deadline of the
    /// calls in flight (it may be earlier: calls that finished are not taken out of it).
    /// `None` while no call with a deadline is in flight.
    pub(super) check_at: Option<Instant>,
    /// The streams from the server being received, by the id of the call that opened them.
    pub(super) streams: HashMap<u64, StreamSlot, BuildHasherDefault<IdHasher>>,
    /// The argument streams being sent, by the id of their call.
    pub(super) outgoing: HashMap<u64, Arc<Outgoing>, BuildHasherDefault<IdHasher>>,
}

/// A stream being received: items that arrived and have not been taken, and how it ended.
pub(super) struct StreamSlot {
    pub(super) items: Arrived,
    /// The credit the server holds.
    pub(super) credit: Granted,
    /// The item arriving in parts, if one is.
    pub(super) partial: Partial,
    /// `Some` once the stream ended: `Ok` cleanly, `Err` with why it failed.
    pub(super) end: Option<Result<(), RpcError>>,
    pub(super) waker: Option<Waker>,
}

impl StreamSlot {
    pub(super) fn new(window: u32) -> Self {
        Self {
            items: Arrived::default(),
            credit: Granted::new(window),
            partial: Partial::default(),
            end: None,
            waker: None,
        }
    }

    /// Ends the stream if it has not ended; returns the receiver's waker.
    pub(super) fn finish(&mut self, end: Result<(), RpcError>) -> Option<Waker> {
        if self.end.is_none() {
            self.end = Some(end);
        }
        self.waker.take()
    }
}

impl Pending {
    /// Fails the calls whose deadline has passed and returns when to check next.
    pub(super) fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut check_at = None;
        for waiter in self.calls.values_mut() {
            match waiter.deadline {
                Some(deadline) if waiter.is_waiting() => {
                    if deadline <= now {
                        // The caller sees the error, then tells the server to drop the handler.
                        if let Some(waker) = waiter.finish(Err(RpcError::DeadlineExceeded)) {
                            waker.wake();
                        }
                    } else if check_at.is_none_or(|at| deadline < at) {
                        check_at = Some(deadline);
                    }
                }
                _ => {}
            }
        }
        self.check_at = check_at;
        self.check_at
    }
}

/// Hashes request ids, which this client chooses itself (consecutive numbers, nothing a peer
/// controls), with one multiplication.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// State shared by the handles and the reader task.
pub(crate) struct Conn {
    pub(super) pending: Mutex<Pending>,
    /// The server said it is shutting down.
    pub(super) shutting_down: AtomicBool,
    /// Wakes those waiting for the server to say it is shutting down.
    pub(super) said_shutting_down: Notify,
    /// The last handle is gone: the writer task sends the goodbye and closes.
    pub(super) released: AtomicBool,
    /// Tells the reader task that a call's deadline is earlier than its next check.
    pub(crate) deadline_moved: Moved,
    /// Wakes those waiting for the connection to close.
    pub(super) closed: Notify,
    /// The next request id to issue: ids count up from 1, so every id below this one and
    /// above 0 has been issued, and none other.
    pub(super) next_id: AtomicU64,
}

impl Conn {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request id not used before on this connection.
    pub(super) fn issue_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether request id `id` was issued on this connection. A reply or stream frame for an
    /// id that was issued but is no longer in flight crossed a cancel and is ignored; one for
    /// an id never issued answers nothing this side sent: a protocol violation. (Relaxed is
    /// enough: a peer's frame for an id arrives through the transport, after the call that
    /// carried the id was handed to it, which came after the id was issued.)
    pub(crate) fn issued(&self, id: u64) -> bool {
        id != 0 && id < self.next_id.load(Ordering::Relaxed)
    }

    /// The outcome of call `id` once it has one; until then, wakes `cx` when it does.
    pub(super) fn poll_outcome(
        &self,
        id: u64,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<Reply, RpcError>> {
        let mut pending = self.lock();
        let Some(waiter) = pending.calls.get_mut(&id) else {
            // Failed with the connection.
            return Poll::Ready(Err(pending
                .closed
                .clone()
                .unwrap_or(RpcError::ConnectionClosed)));
        };
        match &mut waiter.state {
            CallState::Waiting(waker) => {
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            CallState::Done(_) => match pending.calls.remove(&id) {
                Some(Waiter {
                    state: CallState::Done(outcome),
                    ..
                }) => Poll::Ready(outcome),
                _ => Poll::Ready(Err(RpcError::ConnectionClosed)),
            },
        }
    }

    /// Hands reply `reply` to the caller of call `id`, if it still waits.
    pub(crate) fn deliver(&self, id: u64, reply: Reply) {
        let waker = self
            .lock()
            .calls
            .get_mut(&id)
            .and_then(|waiter| waiter.finish(Ok(reply)));
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether streams from the server are open on the connection.
    pub(super) fn carries_streams(&self) -> bool {
        !self.lock().streams.is_empty()
    }

    /// Waits until the connection is closed: its calls have failed with the error it closed
    /// with.
    pub(crate) async fn until_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.lock().closed.is_some() {
                return;
            }
            closed.await;
        }
    }

    /// Calls waiting for their replies.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().calls.len()
    }

    pub(crate) fn fail_all(&self, error: RpcError) {
        // The calls still waiting fail: a caller whose call is gone from the map takes the error
        // the connection closed with. Replies that arrived before stay for their callers.
        let (failed, streams): (Vec<_>, Vec<_>) = {
            let mut pending = self.lock();
            let error = pending.closed.get_or_insert(error).clone();
            let streams = pending
                .streams
                .values_mut()
                .filter_map(|slot| slot.finish(Err(error.clone())))
                .collect();
            let failed = pending
                .calls
                .extract_if(|_, waiter| waiter.is_waiting())
                .collect();
            (failed, streams)
        };
        self.closed.notify_waiters();
        for waker in streams {
            waker.wake();
        }
        for (_, waiter) in failed {
            if let CallState::Waiting(Some(waker)) = waiter.state {
                waker.wake();
            }
        }
    }
}
