//! The writer task: it takes the transport while it writes what the senders queued, many
//! frames at a time, and closes it once every sender is gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Outbox, Queue, Senders, Shared, State, BULK_PER_WRITE, LINGER, MAX_BATCH};
use crate::frame::{FrameError, FrameWrite};

/// Starts the writer task. It ends when every [`Outbox`] is dropped (after writing what is
/// queued and closing the sending direction) or when a write fails (after calling `on_error`).
pub(crate) fn spawn_writer<W: FrameWrite>(
    writer: W,
    on_error: impl FnOnce(FrameError) + Send + 'static,
) -> (Outbox, JoinHandle<()>) {
    let accepts_parts = writer.accepts_parts();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            writer: Some(Box::new(writer)),
            queue: Queue::default(),
            bulk: VecDeque::new(),
            others_sent: 0,
            flush_needed: false,
            error: None,
            failed: false,
            senders_gone: false,
            closed_now: false,
            linger_until: None,
        }),
        work: Notify::new(),
        drained: Notify::new(),
        unsent: AtomicUsize::new(0),
        unsent_bulk: AtomicUsize::new(0),
        unsent_calls: AtomicUsize::new(0),
        accepts_parts,
    });
    let task = tokio::spawn(run_writer(Arc::clone(&shared), on_error));
    (Outbox(Arc::new(Senders(shared)), false), task)
}

async fn run_writer(shared: Arc<Shared>, on_error: impl FnOnce(FrameError)) {
    let mut batch = Vec::with_capacity(16);
    let mut linger_until = None;
    loop {
        let mut bulk_written = 0;
        let mut calls_written = 0;
        let next = {
            let mut state = shared.lock();
            if state.closed_now {
                // Closed from outside: the transport goes now, whoever still holds an outbox.
                let writer = state.writer.take();
                drop(state);
                drop(writer);
                return ended(&shared);
            }
            if let Some(error) = state.error.take() {
                state.failed = true;
                Err(error)
            } else if state.queue.is_empty() && state.bulk.is_empty() && !state.flush_needed {
                if state.senders_gone {
                    linger_until = state.linger_until;
                    Ok(state.writer.take().map(|writer| (writer, true)))
                } else {
                    Ok(None)
                }
            } else {
                state.flush_needed = false;
                calls_written = state.queue.take_into(&mut batch, MAX_BATCH);
                let mut lane_written = 0;
                while lane_written < BULK_PER_WRITE && batch.len() < MAX_BATCH {
                    let Some(group) = state.bulk.pop_front() else {
                        break;
                    };
                    let bytes = group.frames.iter().map(Bytes::len).sum::<usize>();
                    lane_written += bytes;
                    if group.call {
                        calls_written += bytes;
                    } else {
                        bulk_written += bytes;
                    }
                    batch.extend(group.frames);
                }
                // Only this task takes the writer, and it always puts it back.
                Ok(state.writer.take().map(|writer| (writer, false)))
            }
        };
        let (mut writer, close) = match next {
            Err(error) => {
                fail(&shared, error, on_error);
                return;
            }
            Ok(None) if batch.is_empty() => {
                shared.work.notified().await;
                continue;
            }
            Ok(None) => return ended(&shared),
            Ok(Some(next)) => next,
        };
        if close {
            // Bounded: a peer that does not read cannot keep the transport open.
            let until = linger_until.unwrap_or_else(|| tokio::time::Instant::now() + LINGER);
            tokio::select! {
                _ = tokio::time::timeout_at(until, writer.close()) => {}
                () = closed_now(&shared) => {}
            }
            return ended(&shared);
        }
        let written: usize = batch.iter().map(Bytes::len).sum();
        let result = tokio::select! {
            result = writer.write_frames(&batch) => result,
            () = abandoned(&shared) => {
                tracing::debug!("peer does not read; closing the connection");
                return ended(&shared);
            }
        };
        batch.clear();
        let mut state = shared.lock();
        state.writer = Some(writer);
        shared.unsent.fetch_sub(written, Ordering::Relaxed);
        shared
            .unsent_bulk
            .fetch_sub(bulk_written, Ordering::Relaxed);
        shared
            .unsent_calls
            .fetch_sub(calls_written, Ordering::Relaxed);
        if let Err(error) = result {
            drop(state);
            fail(&shared, error, on_error);
            return;
        }
        drop(state);
        shared.drained.notify_waiters();
    }
}

/// The writer is done (closed, or gone): nothing more will be written, so whoever waits for
/// the queue to drain (a stream's producer holding an outbox after the connection's own was
/// dropped) stops waiting.
fn ended(shared: &Shared) {
    give_up(shared);
    shared.drained.notify_waiters();
}

/// Marks the writer as done: nothing queued will be sent, so nothing counts as unsent any
/// more (a connection over its backlog would otherwise wait for it, or never read again).
fn give_up(shared: &Shared) {
    let _state = {
        let mut state = shared.lock();
        state.failed = true;
        state
    };
    shared.unsent.store(0, Ordering::Relaxed);
    shared.unsent_bulk.store(0, Ordering::Relaxed);
    shared.unsent_calls.store(0, Ordering::Relaxed);
}

/// Marks the writer as failed, wakes whoever waits on it, and reports the error.
fn fail(shared: &Shared, error: FrameError, on_error: impl FnOnce(FrameError)) {
    give_up(shared);
    shared.drained.notify_waiters();
    tracing::debug!(%error, "write failed");
    on_error(error);
}

/// Completes when the linger ends ([`LINGER`] after every [`Outbox`] is gone, unless the
/// connection said otherwise), counted once for all the writes that follow: a write still under
/// way by then waits on a peer that does not read, or reads too slowly, and is abandoned.
/// Completes at once when the connection is closed from outside ([`super::Closer::close_now`]).
async fn abandoned(shared: &Shared) {
    let until = loop {
        let woken = shared.work.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let state = shared.lock();
            if state.closed_now {
                return;
            }
            if state.senders_gone {
                break state
                    .linger_until
                    .unwrap_or_else(|| tokio::time::Instant::now() + LINGER);
            }
        }
        woken.await;
    };
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        () = closed_now(shared) => {}
    }
}

/// Completes once the connection is closed from outside ([`super::Closer::close_now`]).
async fn closed_now(shared: &Shared) {
    loop {
        let woken = shared.work.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if shared.lock().closed_now {
            return;
        }
        woken.await;
    }
}
