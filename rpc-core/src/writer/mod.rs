//! A connection's sending half: frames are written by the task that sends them while the
//! transport is idle, and queued for a writer task, which coalesces them into batches, while a
//! write is under way or the transport would block.
//!
//! Writing in the sender's task saves a task hop (and, across cores, a wake-up) per message on
//! an idle connection; a loaded connection still gets many frames per write. A sender only
//! ever writes without waiting ([`FrameWrite::try_write_now`]), so nothing is left half-written
//! if it is cancelled, and frames keep their order: a sender writes only when nothing is queued
//! and the writer task is not writing.
//!
//! Stream frames (items, parts of items, ends, and cancels, which must not overtake them) take
//! a lane of their own, in groups of whole frames: each write of the writer task takes every
//! other frame queued and at most [`BULK_PER_WRITE`] bytes of stream frames, so that a reply
//! waits behind at most that much of a stream, however many bytes the stream has queued.
//!
//! This file holds the senders' side ([`Outbox`]) and the state both sides share; the writer
//! task is in `task.rs`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::frame::{Encoded, FrameError, FrameWrite, TryWrite};

mod queue;
mod task;

use queue::Queue;

pub(crate) use task::spawn_writer;

/// Most frames written in one batch (besides one group of stream frames); a group of stream
/// frames holds at most as many buffers.
pub(crate) const MAX_BATCH: usize = 256;

/// Frames queued for the writer task past which a sender writes them itself, if the writer
/// task is not writing: with many calls in flight, the peer gets the first ones while the
/// caller is still making the others, so that both sides work at once.
pub(crate) const SENDER_WRITES_AT: usize = 8;

/// Bytes of stream frames past which a write of the writer task takes no further group of
/// them: other frames queued meanwhile go out first.
pub(crate) const BULK_PER_WRITE: usize = 64 * 1024;

/// How long the writer keeps trying to send what is queued once every [`Outbox`] is gone, before
/// it closes the transport anyway: a peer that stops reading cannot hold a connection open.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

type BoxedIo<'a> = Pin<Box<dyn Future<Output = Result<(), FrameError>> + Send + 'a>>;

/// A [`FrameWrite`] behind a trait object, so that the queue need not be generic.
trait DynWrite: Send {
    fn try_write_now(&mut self, frames: &[Bytes]) -> Result<TryWrite, FrameError>;
    fn write_frames<'a>(&'a mut self, frames: &'a [Bytes]) -> BoxedIo<'a>;
    fn close(&mut self) -> BoxedIo<'_>;
}

impl<W: FrameWrite> DynWrite for W {
    fn try_write_now(&mut self, frames: &[Bytes]) -> Result<TryWrite, FrameError> {
        FrameWrite::try_write_now(self, frames)
    }

    fn write_frames<'a>(&'a mut self, frames: &'a [Bytes]) -> BoxedIo<'a> {
        Box::pin(FrameWrite::write_frames(self, frames))
    }

    fn close(&mut self) -> BoxedIo<'_> {
        Box::pin(FrameWrite::close(self))
    }
}

struct State {
    /// The transport while no write is under way; the writer task holds it while it writes.
    writer: Option<Box<dyn DynWrite>>,
    /// Frames waiting for the writer task, in order.
    queue: Queue,
    /// Stream frames waiting for the writer task, in order, in groups of whole frames; they
    /// go out after the frames in `queue`.
    bulk: VecDeque<BulkGroup>,
    /// Calls to send frames other than stream frames so far: a stream that sees it change
    /// sends long items in parts, so that those frames need not wait behind a whole item.
    others_sent: u64,
    /// The transport holds bytes of frames already sent that the writer task must flush.
    flush_needed: bool,
    /// A write made by a sender failed; the writer task reports it.
    error: Option<FrameError>,
    /// The writer task has ended (a write failed): frames can no longer be sent.
    failed: bool,
    /// Every [`Outbox`] is gone: the writer task writes what is queued, then closes.
    senders_gone: bool,
    /// Until when the writer task keeps trying once every sender is gone: [`LINGER`] (unless
    /// the connection said otherwise) from then, in all, whatever the peer takes meanwhile.
    linger_until: Option<tokio::time::Instant>,
    /// [`Closer::close_now`] was called: the writer task drops the transport, also one it is
    /// writing to, and ends, whoever still holds an [`Outbox`].
    closed_now: bool,
}

/// Frames that go out together in the stream lane.
struct BulkGroup {
    frames: Vec<Bytes>,
    /// The frames open a call of this side's (behind stream frames queued before it): they
    /// count among its unsent calls, not among the stream frames.
    call: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task.
    work: Notify,
    /// Wakes senders waiting for the unsent bytes to go down (after each write).
    drained: Notify,
    /// Bytes of the frames queued or being written by the writer task; changed under the lock,
    /// read without it.
    unsent: AtomicUsize,
    /// The part of `unsent` that stream frames make up.
    unsent_bulk: AtomicUsize,
    /// The part of `unsent` that this side's own calls make up, also those that open a stream and
    /// wait in the stream lane.
    unsent_calls: AtomicUsize,
    /// The transport takes frames in parts.
    accepts_parts: bool,
}

impl Shared {
    /// Counts `bytes` more of frames queued for the writer task, of calls if `call`.
    fn count_unsent(&self, bytes: usize, call: bool) {
        self.unsent.fetch_add(bytes, Ordering::Relaxed);
        if call {
            self.unsent_calls.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is complete before anything that could panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` for the writer task (with the lock `state` held) and wakes it; once
    /// [`SENDER_WRITES_AT`] frames wait and the writer task is not writing, the sender writes
    /// them itself.
    fn enqueue(&self, mut state: MutexGuard<'_, State>, frame: Bytes, call: bool) {
        self.unsent.fetch_add(frame.len(), Ordering::Relaxed);
        if call {
            self.unsent_calls.fetch_add(frame.len(), Ordering::Relaxed);
        }
        // The writer task was woken when the queue stopped being empty, and takes everything
        // queued by the time it runs (or looks again after the write it is making).
        let wake = state.queue.is_empty();
        state.queue.push(frame, call);
        if state.queue.len() >= SENDER_WRITES_AT {
            let mut queue = std::mem::take(&mut state.queue);
            if write_now(self, &mut state, queue.frames()) {
                let bytes = queue.frames().iter().map(Bytes::len).sum::<usize>();
                let calls = queue.clear();
                self.unsent.fetch_sub(bytes, Ordering::Relaxed);
                self.unsent_calls.fetch_sub(calls, Ordering::Relaxed);
                // Keeps the queue's allocation.
                state.queue = queue;
                drop(state);
                self.drained.notify_waiters();
                return;
            }
            state.queue = queue;
        }
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }
}

/// The connection's writer task has ended; the frame was not sent.
#[derive(Debug)]
pub(crate) struct Closed;

/// Sends frames on a connection. Clones share the connection; the writer task closes the
/// sending direction once every clone is dropped. The second field says whether the frames
/// sent through this one are this side's calls ([`Outbox::for_calls`]).
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Senders>, bool);

/// Dropped with the last [`Outbox`].
struct Senders(Arc<Shared>);

impl Drop for Senders {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            state.senders_gone = true;
            state
                .linger_until
                .get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
        }
        self.0.work.notify_one();
    }
}

impl Outbox {
    /// An outbox of the same connection for this side's calls: their frames waiting to go out
    /// are not counted as replies ([`Outbox::unsent_replies`]).
    pub(crate) fn for_calls(&self) -> Self {
        Self(Arc::clone(&self.0), true)
    }

    /// Queues a frame for the writer task.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Closed> {
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            return Err(Closed);
        }
        state.others_sent += 1;
        shared.enqueue(state, frame, self.1);
        Ok(())
    }

    /// Sends a frame: written at once if the transport is idle and takes it without waiting,
    /// else queued for the writer task.
    pub(crate) fn send_now(&self, frame: Bytes) -> Result<(), Closed> {
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            return Err(Closed);
        }
        state.others_sent += 1;
        if !try_now(shared, &mut state, std::slice::from_ref(&frame)) {
            shared.enqueue(state, frame, self.1);
        }
        Ok(())
    }

    /// Sends frames, taking them out of `frames`: written at once (coalesced) if the transport
    /// is idle and takes them without waiting, else queued for the writer task.
    pub(crate) fn send_all_now(&self, frames: &mut Vec<Bytes>) -> Result<(), Closed> {
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            frames.clear();
            return Err(Closed);
        }
        if frames.is_empty() {
            return Ok(());
        }
        state.others_sent += 1;
        if try_now(shared, &mut state, frames) {
            frames.clear();
        } else {
            let bytes = frames.iter().map(Bytes::len).sum::<usize>();
            shared.count_unsent(bytes, self.1);
            state.queue.append(frames, self.1);
            drop(state);
            shared.work.notify_one();
        }
        Ok(())
    }

    /// Sends stream frames, given in groups of whole frames, after every other frame sent
    /// before them; other frames sent after them may go first. The first group is written at
    /// once if nothing is queued and the transport takes it without waiting.
    pub(crate) fn send_bulk(&self, groups: Vec<Vec<Bytes>>) -> Result<(), Closed> {
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            return Err(Closed);
        }
        let mut groups = groups
            .into_iter()
            .filter(|group| !group.is_empty())
            .peekable();
        if state.bulk.is_empty() {
            if let Some(first) = groups.peek() {
                if try_now(shared, &mut state, first) {
                    groups.next();
                }
            }
        }
        let mut bytes = 0;
        for group in groups {
            bytes += group.iter().map(Bytes::len).sum::<usize>();
            state.bulk.push_back(BulkGroup {
                frames: group,
                call: false,
            });
        }
        if bytes > 0 {
            shared.unsent.fetch_add(bytes, Ordering::Relaxed);
            shared.unsent_bulk.fetch_add(bytes, Ordering::Relaxed);
            drop(state);
            shared.work.notify_one();
        }
        Ok(())
    }

    /// How many times frames other than stream frames were sent so far.
    pub(crate) fn others_sent(&self) -> u64 {
        self.0 .0.lock().others_sent
    }

    /// Sends one stream frame (an end, or a cancel that must not overtake the items before
    /// it), as [`Outbox::send_bulk`] does.
    pub(crate) fn send_bulk_one(&self, frame: Encoded) -> Result<(), Closed> {
        let mut group = Vec::new();
        frame.push_into(&mut group);
        self.send_bulk(vec![group])
    }

    /// Whether frames may be sent in parts ([`Encoded::Parts`]).
    pub(crate) fn accepts_parts(&self) -> bool {
        self.0 .0.accepts_parts
    }

    /// Sends an encoded frame: `now`, as [`Outbox::send_now`] does, or queued.
    pub(crate) fn send_encoded(&self, frame: Encoded, now: bool) -> Result<(), Closed> {
        match frame {
            Encoded::One(frame) if now => self.send_now(frame),
            Encoded::One(frame) => self.send(frame),
            Encoded::Parts(parts) => self.send_frames(parts, now),
        }
    }

    /// Sends buffers (whole frames, or frames in parts) together and in order: `now`, as
    /// [`Outbox::send_all_now`] does, or queued.
    pub(crate) fn send_frames(&self, mut frames: Vec<Bytes>, now: bool) -> Result<(), Closed> {
        if now {
            return self.send_all_now(&mut frames);
        }
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            return Err(Closed);
        }
        state.others_sent += 1;
        let bytes = frames.iter().map(Bytes::len).sum::<usize>();
        shared.count_unsent(bytes, self.1);
        state.queue.append(&mut frames, self.1);
        drop(state);
        shared.work.notify_one();
        Ok(())
    }

    /// Sends a call that opens a stream (its frames together and in order), as
    /// [`Outbox::send_frames`] does, except that stream frames already queued go first: among them
    /// may be the cancel of a stream the peer still counts against its limit of open streams,
    /// which a call overtaking it would find full.
    pub(crate) fn send_opening(&self, frames: Vec<Bytes>, now: bool) -> Result<(), Closed> {
        let shared = &self.0 .0;
        let mut state = shared.lock();
        if state.failed || state.senders_gone {
            return Err(Closed);
        }
        if state.bulk.is_empty() {
            drop(state);
            return self.send_frames(frames, now);
        }
        state.others_sent += 1;
        let bytes = frames.iter().map(Bytes::len).sum::<usize>();
        shared.count_unsent(bytes, self.1);
        if !self.1 {
            // Not this side's calls (no such sender opens streams today): counted as the
            // stream frames the writer task takes them for.
            shared.unsent_bulk.fetch_add(bytes, Ordering::Relaxed);
        }
        state.bulk.push_back(BulkGroup {
            frames,
            call: self.1,
        });
        drop(state);
        shared.work.notify_one();
        Ok(())
    }

    /// Lets the writer task write what is queued and close, although other [`Outbox`]es may
    /// remain (handles that outlive the connection): frames sent from now on are refused.
    pub(crate) fn close_when_sent(&self) {
        self.close_when_sent_within(LINGER);
    }

    /// As [`Outbox::close_when_sent`], with `linger` in place of [`LINGER`]: for a server that
    /// shuts down gracefully, whose replies may take as long as its drain allows.
    pub(crate) fn close_when_sent_within(&self, linger: std::time::Duration) {
        let shared = &self.0 .0;
        {
            let mut state = shared.lock();
            state.senders_gone = true;
            state.linger_until = Some(tokio::time::Instant::now() + linger);
        }
        shared.work.notify_one();
    }

    /// Bytes of frames other than stream frames and this side's calls waiting for the writer
    /// task or being written by it: the replies the peer has not taken yet.
    pub(crate) fn unsent_replies(&self) -> usize {
        let shared = &self.0 .0;
        let bulk = shared.unsent_bulk.load(Ordering::Relaxed);
        let calls = shared.unsent_calls.load(Ordering::Relaxed);
        shared
            .unsent
            .load(Ordering::Relaxed)
            .saturating_sub(bulk)
            .saturating_sub(calls)
    }

    /// Bytes of this side's calls (also those that open a stream, in the stream lane) waiting for
    /// the writer task or being written by it.
    pub(crate) fn unsent_calls(&self) -> usize {
        self.0 .0.unsent_calls.load(Ordering::Relaxed)
    }

    /// Waits until at most `limit` bytes of replies and at most `limit` bytes of this side's
    /// calls are unsent, each counted apart (stream frames left out), or the writer task has
    /// ended.
    pub(crate) async fn replies_and_calls_drained_to(&self, limit: usize) {
        self.drained_until(|_| self.unsent_replies() <= limit && self.unsent_calls() <= limit)
            .await;
    }

    /// Waits until at most `limit` bytes of this side's calls are unsent, or the writer task has
    /// ended.
    pub(crate) async fn calls_drained_to(&self, limit: usize) {
        self.drained_until(|_| self.unsent_calls() <= limit).await;
    }

    /// Waits until at most `limit` bytes are unsent (or the writer task has ended).
    pub(crate) async fn drained_to(&self, limit: usize) {
        self.drained_until(|shared| shared.unsent.load(Ordering::Relaxed) <= limit)
            .await;
    }

    /// Waits until at most `limit` bytes of replies are unsent ([`Outbox::unsent_replies`]:
    /// stream frames left out), or the writer task has ended.
    pub(crate) async fn replies_drained_to(&self, limit: usize) {
        self.drained_until(|_| self.unsent_replies() <= limit).await;
    }

    /// Waits until `done` holds after a write, or the writer task has ended.
    async fn drained_until(&self, done: impl Fn(&Shared) -> bool) {
        let shared = &self.0 .0;
        loop {
            let drained = shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let state = shared.lock();
                if done(shared) || state.failed {
                    return;
                }
            }
            drained.await;
        }
    }
}

/// Drops a connection's transport writer at once, from outside the writer task: for a
/// connection whose tasks died with their runtime, so that its descriptor closes and the peer
/// sees it go.
pub(crate) struct Closer(Arc<Shared>);

impl Closer {
    pub(crate) fn close_now(&self) {
        let writer = {
            let mut state = self.0.lock();
            state.failed = true;
            state.closed_now = true;
            state.queue.clear();
            state.bulk.clear();
            state.writer.take()
        };
        drop(writer);
        self.0.drained.notify_waiters();
        self.0.work.notify_one();
    }
}

impl Outbox {
    /// A handle that can drop the transport writer at once.
    pub(crate) fn closer(&self) -> Closer {
        Closer(Arc::clone(&self.0 .0))
    }
}

/// Writes `frames` in the sender's task if nothing is queued and the writer task is not
/// writing; returns whether they are taken care of.
fn try_now(shared: &Shared, state: &mut State, frames: &[Bytes]) -> bool {
    state.queue.is_empty() && write_now(shared, state, frames)
}

/// Writes `frames`, which go before anything queued, in the sender's task if the writer task
/// is not writing; returns whether they are taken care of.
fn write_now(shared: &Shared, state: &mut State, frames: &[Bytes]) -> bool {
    if state.flush_needed || state.error.is_some() {
        return false;
    }
    let Some(writer) = state.writer.as_mut() else {
        return false;
    };
    match writer.try_write_now(frames) {
        Ok(TryWrite::Written) => true,
        Ok(TryWrite::Buffered) => {
            state.flush_needed = true;
            shared.work.notify_one();
            true
        }
        Ok(TryWrite::WouldBlock) => false,
        Err(error) => {
            // The writer task reports it, as it would its own; the frames are lost with the
            // connection.
            state.error = Some(error);
            shared.work.notify_one();
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameRead, FrameReader, FrameWriter};

    fn frame(i: u32) -> Bytes {
        let mut frame = 8u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&u64::from(i).to_le_bytes());
        Bytes::from(frame)
    }

    /// Frames queued while the writer task cannot run (the sender never yields) go out from
    /// the sender once [`SENDER_WRITES_AT`] of them wait, in order, in one write.
    #[tokio::test]
    async fn a_long_queue_is_written_by_its_sender() {
        use futures_util::FutureExt;
        use tokio::io::AsyncReadExt;

        let (tx, mut rx) = tokio::io::duplex(4096);
        let (outbox, _task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        let mut buf = [0u8; 4096];
        for i in 0..SENDER_WRITES_AT - 1 {
            outbox.send(frame(i as u32)).expect("open");
        }
        assert!(
            rx.read(&mut buf).now_or_never().is_none(),
            "written before the queue was long"
        );
        outbox
            .send(frame(SENDER_WRITES_AT as u32 - 1))
            .expect("open");
        let read = rx
            .read(&mut buf)
            .now_or_never()
            .expect("written")
            .expect("reads");
        let expected: Vec<u8> = (0..SENDER_WRITES_AT as u32)
            .flat_map(|i| frame(i).to_vec())
            .collect();
        assert_eq!(buf.get(..read), Some(&expected[..]));
        assert_eq!(outbox.unsent_replies(), 0);
    }

    /// A sender still waiting for the queue to drain when the writer gives up on a peer that
    /// does not read (every other sender gone, the linger passed) stops waiting: nothing more
    /// will drain.
    #[tokio::test]
    async fn a_writer_that_gives_up_releases_those_waiting_for_the_queue() {
        // Never read: the writes wait, and the queue never drains.
        let (tx, _rx) = tokio::io::duplex(64);
        let (outbox, task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        for i in 0..100 {
            outbox.send(frame(i)).expect("open");
        }
        let waiting = outbox.clone();
        let waiter = tokio::spawn(async move { waiting.drained_to(0).await });
        outbox.close_when_sent();
        drop(outbox);
        tokio::time::timeout(LINGER * 10, task)
            .await
            .expect("the writer gives up")
            .expect("join");
        tokio::time::timeout(LINGER * 10, waiter)
            .await
            .expect("the waiting sender is released")
            .expect("join");
    }

    /// A writer closing with a linger longer than [`LINGER`] (a server shutting down
    /// gracefully) still delivers everything to a peer that starts reading after [`LINGER`]
    /// has passed. (Paused time: the runtime's clock jumps ahead while every task waits.)
    #[tokio::test(start_paused = true)]
    async fn a_longer_linger_waits_for_a_slow_reader() {
        use tokio::io::AsyncReadExt;

        let (tx, mut rx) = tokio::io::duplex(64);
        let (outbox, task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        for i in 0..100 {
            outbox.send(frame(i)).expect("open");
        }
        outbox.close_when_sent_within(LINGER * 5);
        drop(outbox);
        tokio::time::sleep(LINGER * 2).await;
        let mut everything = Vec::new();
        rx.read_to_end(&mut everything).await.expect("read");
        assert_eq!(
            everything.len(),
            100 * frame(0).len(),
            "every frame arrives"
        );
        task.await.expect("writer task");
    }

    /// The linger is counted once from when every sender is gone, not again for each write: a
    /// peer that takes a little now and then (a batch every 0.9 s) does not keep the transport
    /// open for as long as it likes. (Paused time.)
    #[tokio::test(start_paused = true)]
    async fn the_linger_is_counted_once_for_a_peer_that_reads_a_little_at_a_time() {
        use tokio::io::AsyncReadExt;

        let (tx, mut rx) = tokio::io::duplex(4096);
        let (outbox, task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        let count = 4096;
        for i in 0..count {
            outbox.send(frame(i)).expect("open");
        }
        outbox.close_when_sent();
        drop(outbox);
        let reader = tokio::spawn(async move {
            let mut taken = 0;
            let mut buf = vec![0u8; 4096];
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(900)).await;
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => return taken,
                    Ok(read) => taken += read,
                }
            }
        });
        tokio::time::timeout(LINGER * 3, task)
            .await
            .expect("the writer ends within its linger")
            .expect("join");
        let taken = reader.await.expect("reader");
        assert!(
            taken < count as usize * frame(0).len(),
            "the peer got everything: {taken}"
        );
    }

    /// Waiting for the replies to drain (what a server does before it reads calls again after
    /// a backlog) does not wait for the stream frames queued behind them: once the reply is
    /// written the wait ends, while stream frames are still unsent.
    #[tokio::test]
    async fn replies_drain_ahead_of_the_stream_frames_behind_them() {
        use futures_util::FutureExt;
        use tokio::io::AsyncReadExt;

        let (tx, mut rx) = tokio::io::duplex(1024);
        let (outbox, _task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        let reply = frame(1);
        let mut item = (64 * 1024u32).to_le_bytes().to_vec();
        item.resize(4 + 64 * 1024, 0);
        let item = Bytes::from(item);
        // The reply is queued first; the first write takes it and one group of stream frames.
        outbox.send(reply.clone()).expect("open");
        outbox
            .send_bulk((0..8).map(|_| vec![item.clone()]).collect())
            .expect("open");
        // The peer reads what that first write holds, and nothing more.
        let first_write = reply.len() + item.len();
        let reader = tokio::spawn(async move {
            let mut taken = vec![0u8; first_write];
            rx.read_exact(&mut taken).await.expect("read");
            rx
        });
        tokio::time::timeout(LINGER * 10, outbox.replies_drained_to(0))
            .await
            .expect("the replies drain");
        assert_eq!(outbox.unsent_replies(), 0);
        assert!(
            outbox.drained_to(0).now_or_never().is_none(),
            "stream frames are still unsent"
        );
        let _rx = reader.await.expect("reader");
    }

    /// A connection closed from outside (its server's shutdown timeout passed) closes its
    /// transport and ends its writer task at once, although a handler still keeps an outbox
    /// (a handle to the client's callbacks): while a write waits on a peer that does not read,
    /// and while the writer is idle. Before, the transport stayed open as long as the handle.
    #[tokio::test]
    async fn closing_now_ends_the_writer_whoever_keeps_an_outbox() {
        use tokio::io::AsyncReadExt;

        // (a write under way, lingering after the connection's end), for each case
        for (busy, lingering) in [(true, false), (false, false), (true, true)] {
            let (tx, mut rx) = tokio::io::duplex(64);
            let (outbox, task) =
                spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
            if busy {
                for i in 0..100 {
                    outbox.send(frame(i)).expect("open");
                }
            }
            let kept = outbox.clone();
            let closer = outbox.closer();
            if lingering {
                // A graceful shutdown's long linger, cut short by its drain's timeout.
                outbox.close_when_sent_within(LINGER * 60);
                tokio::task::yield_now().await;
            }
            closer.close_now();
            drop(outbox);
            tokio::time::timeout(LINGER * 10, task)
                .await
                .unwrap_or_else(|_| panic!("the writer ends ({busy}, {lingering})"))
                .expect("join");
            assert_eq!(kept.unsent_replies(), 0, "nothing counts as unsent");
            let mut rest = Vec::new();
            tokio::time::timeout(LINGER * 10, rx.read_to_end(&mut rest))
                .await
                .unwrap_or_else(|_| panic!("the transport is closed ({busy}, {lingering})"))
                .expect("read");
            assert!(rest.len() <= 64, "only what the pipe held: {}", rest.len());
            drop(kept);
        }
    }

    /// Frames written at once, left half-written, and queued behind a busy writer all arrive
    /// whole and in the order they were sent.
    #[tokio::test]
    async fn frames_keep_their_order_across_both_paths() {
        // A pipe that holds less than two frames: most sends find it full.
        let (tx, rx) = tokio::io::duplex(20);
        let (outbox, task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        let count = 500u32;
        let mut batch = Vec::new();
        for i in 0..count {
            match i % 3 {
                0 => outbox.send_now(frame(i)).expect("open"),
                1 => outbox.send(frame(i)).expect("open"),
                _ => {
                    batch.push(frame(i));
                    outbox.send_all_now(&mut batch).expect("open");
                    assert!(batch.is_empty());
                }
            }
        }
        drop(outbox);
        let mut reader = FrameReader::new(rx);
        for i in 0..count {
            let got = reader
                .read_frame(crate::protocol::DEFAULT_MAX_FRAME)
                .await
                .expect("reads")
                .expect("a frame");
            assert_eq!(&got[..], &u64::from(i).to_le_bytes(), "frame {i}");
        }
        assert_eq!(
            reader.read_frame(crate::protocol::DEFAULT_MAX_FRAME).await,
            Ok(None)
        );
        task.await.expect("writer task");
    }
}
