//! Serving the calls a peer makes on one connection: start them, track them, cancel them, and
//! the streams they open. The server serves its clients' calls with it, and a client the
//! callbacks of its server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::Instant;

use crate::error::ProtocolError;
use crate::frame::header_frame;
use crate::protocol::{Header, WireError, DESCRIBE};
use crate::server::call::{failed, Calls, Started};
use crate::server::streams::{Sending, Streams};
use crate::service::{Dispatch, MethodKind};
use crate::stream::{Inbound, Incoming};
use crate::writer::Outbox;

/// What a handler's task reports when it ends.
enum Finished {
    /// The call with this request id has been answered.
    Call(u64),
    /// A one-way handler finished.
    Oneway,
    /// The stream with this id ended.
    Stream(u64),
}

/// The calls of one connection being served.
pub(crate) struct Serving<'a, D> {
    calls: Calls<'a, D>,
    outbox: Outbox,
    /// Handlers that did not finish on their first poll, each on its own task; dropping the
    /// set aborts them.
    tasks: JoinSet<Finished>,
    /// The calls among them, by request id, to cancel them.
    cancels: HashMap<u64, AbortHandle>,
    /// The calls among them that have sent their reply, by request id and task: their tasks
    /// are ending, and the client may use the id again before the connection has joined them.
    answered: Arc<Mutex<Vec<(u64, Id)>>>,
    /// The streams of the calls, both ways.
    streams: Streams,
    /// Tells the next one-way handler that the previous one has finished (its sender dropped).
    last_oneway: Option<oneshot::Receiver<()>>,
    /// Whether calls may open streams. A client's callbacks may not: the stream frames of
    /// both directions would share one id space.
    streams_allowed: bool,
}

impl<'a, D: Dispatch> Serving<'a, D> {
    pub(crate) fn new(calls: Calls<'a, D>, outbox: Outbox, streams_allowed: bool) -> Self {
        Self {
            calls,
            outbox,
            tasks: JoinSet::new(),
            cancels: HashMap::new(),
            answered: Arc::default(),
            streams: Streams::default(),
            last_oneway: None,
            streams_allowed,
        }
    }

    /// Whether call `id`, running on `task`, has sent its reply (its task not yet joined);
    /// forgets that it has.
    fn take_answered(&self, id: u64, task: Id) -> bool {
        let mut answered = lock(&self.answered);
        let Some(at) = answered.iter().position(|&done| done == (id, task)) else {
            return false;
        };
        answered.swap_remove(at);
        true
    }

    /// No handler is running.
    pub(crate) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether fewer than `max` handlers run, open streams not counted: a result stream lives
    /// as long as its receiver wants, and the handler of a call whose stream from the client is
    /// open waits for items that only reading brings (the streams have their own limit).
    pub(crate) fn handlers_below(&self, max: usize) -> bool {
        let running = self.tasks.len().saturating_sub(self.streams.sending());
        // Counted only near the limit: a walk over the streams from the client.
        running < max
            || running.saturating_sub(
                self.streams
                    .receiving_only(|id| self.cancels.contains_key(&id)),
            ) < max
    }

    /// Waits for a handler's task to end and forgets it; pending while none runs.
    pub(crate) async fn joined(&mut self) {
        if self.tasks.is_empty() {
            // Without asking the set, which takes its lock: a task spawned later is waited for
            // at the connection's next turn.
            return std::future::pending().await;
        }
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let task = match &joined {
            Ok((task, _)) => *task,
            Err(error) => error.id(),
        };
        let panicked = joined.as_ref().is_err_and(tokio::task::JoinError::is_panic);
        let id = match joined {
            Ok((_, Finished::Call(id) | Finished::Stream(id))) => Some(id),
            // A task that panicked outside its handler's guard (a stream source whose drop
            // panics once its end is sent): found by its task, so that its call or stream does
            // not count against the limits for the rest of the connection.
            Err(error) if error.is_panic() => self
                .cancels
                .iter()
                .find(|(_, handle)| handle.id() == task)
                .map(|(&id, _)| id),
            _ => None,
        };
        if let Some(id) = id {
            if self
                .cancels
                .get(&id)
                .is_some_and(|handle| handle.id() == task)
            {
                self.cancels.remove(&id);
                // Its stream, if it sent one, is no longer open, however it ended.
                let sending = self.streams.sent(id);
                if panicked {
                    let panic = WireError::HandlerPanicked;
                    match sending {
                        // Unless its end went out before the panic: the client waits for it.
                        Some(sending) => {
                            end_sending(&self.outbox, id, &sending, panic.clone(), panic);
                        }
                        // A call whose handler panicked outside its guard (dropped at its
                        // deadline, or when its stream from the client failed) before its reply
                        // went out: answered now, or its caller would wait for ever.
                        None if !lock(&self.answered).contains(&(id, task)) => {
                            let _ = self.outbox.send_encoded(failed(id, panic), true);
                        }
                        None => {}
                    }
                }
            }
        }
        lock(&self.answered).retain(|&(_, of)| of != task);
    }

    /// Starts call `id`; its reply (if it is answered at once) and any stream credit go to
    /// `out`.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::DuplicateId`] if a call with this id is still running.
    pub(crate) fn call(
        &mut self,
        (id, method, deadline_us): (u64, u32, Option<u64>),
        frame: &Bytes,
        body_at: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProtocolError> {
        // An id stays in use while its call runs (until it has sent its reply) and while its
        // argument stream is open.
        if let Some(running) = self.cancels.get(&id) {
            if !self.take_answered(id, running.id()) {
                return Err(ProtocolError::DuplicateId(id));
            }
            // The task of the call answered before is ending: its join finds the id taken by
            // this call and leaves it.
            self.cancels.remove(&id);
        }
        if self.streams.receives(id) {
            return Err(ProtocolError::DuplicateId(id));
        }
        if method == DESCRIBE {
            self.calls.describe(id).push_into(out);
            return Ok(());
        }
        let config = self.calls.config;
        let deadline =
            deadline_us.and_then(|us| Instant::now().checked_add(Duration::from_micros(us)));
        let info = self.calls.service.descriptor().method(method);
        let (kind, takes_stream) =
            info.map_or((MethodKind::Call, false), |m| (m.kind, m.takes_stream));
        let streaming = kind == MethodKind::Stream || takes_stream;
        if kind == MethodKind::Oneway || (streaming && !self.streams_allowed) {
            failed(id, WireError::WrongKind(method)).push_into(out);
            return Ok(());
        }
        if streaming && self.streams.open() >= config.max_streams {
            let max = u32::try_from(config.max_streams).unwrap_or(u32::MAX);
            failed(id, WireError::TooManyStreams { max }).push_into(out);
            return Ok(());
        }
        // The call's stream from the client, opened once the call starts.
        let window = config.stream_window;
        let inbound = takes_stream.then(|| Inbound::new(window, config.max_frame));
        let incoming = inbound.as_ref().map(|slot| {
            let outbox = self.outbox.clone();
            let limits = self.calls.upload_limits(method);
            Incoming::new(Arc::clone(slot), id, outbox, window, limits)
        });
        let dispatched = match self
            .calls
            .dispatch(id, method, kind, frame, body_at, incoming)
        {
            Ok(dispatched) => dispatched,
            Err(reply) => {
                reply.push_into(out);
                return Ok(());
            }
        };
        if let Some(slot) = &inbound {
            // Before any reply: the client learns that the stream is open. Handed to the outbox
            // now, not gathered: a handler on a task of its own sends its reply or stop there,
            // and it must not overtake the credit.
            out.push(header_frame(&Header::Credit {
                stream: id,
                bytes: window,
            }));
            let _ = self.outbox.send_all_now(out);
            self.streams.receive(id, Arc::clone(slot));
        }
        if kind == MethodKind::Stream {
            let sending = self.streams.send(id);
            let outbox = self.outbox.clone();
            let rest = self
                .calls
                .start_stream(id, method, deadline, dispatched, inbound, sending, outbox);
            let handle = self.tasks.spawn(async move {
                rest.await;
                Finished::Stream(id)
            });
            self.cancels.insert(id, handle);
            return Ok(());
        }
        match self
            .calls
            .start_call(id, method, deadline, dispatched, inbound)
        {
            Started::Answered(reply) => reply.push_into(out),
            Started::Running(rest) => {
                let outbox = self.outbox.clone();
                let answered = Arc::clone(&self.answered);
                let handle = self.tasks.spawn(async move {
                    let reply = rest.await;
                    // Before the reply goes out: the client may use the id again as soon as it
                    // has the reply. (Nothing between the two can be cancelled.)
                    lock(&answered).push((id, tokio::task::id()));
                    // Written by this task if the transport is idle.
                    let _ = outbox.send_encoded(reply, true);
                    Finished::Call(id)
                });
                self.cancels.insert(id, handle);
            }
        }
        Ok(())
    }

    /// Starts one-way call of `method`, after the one-way calls before it.
    pub(crate) fn notify(&mut self, method: u32, frame: &Bytes, body_at: usize) {
        // The previous one-way handler, if it is still running.
        let previous = self
            .last_oneway
            .take()
            .and_then(|mut done| match done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => Some(done),
                _ => None,
            });
        let body = frame.slice(body_at..);
        match self.calls.start_oneway(method, &body, previous.is_none()) {
            Some(rest) => {
                let (done_tx, done_rx) = oneshot::channel::<()>();
                self.last_oneway = Some(done_rx);
                self.tasks.spawn(async move {
                    if let Some(previous) = previous {
                        // Ends when the previous handler's task drops its sender.
                        let _ = previous.await;
                    }
                    rest.await;
                    drop(done_tx);
                    Finished::Oneway
                });
            }
            None => self.last_oneway = previous,
        }
    }

    /// The caller gave up on call `id` (or stopped its result stream): its handler is dropped.
    pub(crate) fn cancel(&mut self, id: u64) {
        if let Some(handle) = self.cancels.remove(&id) {
            tracing::debug!(id, "call cancelled by the caller");
            handle.abort();
            self.take_answered(id, handle.id());
        }
        self.streams.forget(id);
    }

    /// Credit for result stream `stream`.
    ///
    /// # Errors
    ///
    /// As [`Streams::credit`].
    pub(crate) fn credit(&self, stream: u64, bytes: u32) -> Result<(), ProtocolError> {
        self.streams.credit(stream, bytes)
    }

    /// An item of argument stream `stream`.
    ///
    /// # Errors
    ///
    /// As [`Streams::item`].
    pub(crate) fn item(
        &self,
        stream: u64,
        frame: Bytes,
        body_at: usize,
    ) -> Result<(), ProtocolError> {
        self.streams.item(stream, frame, body_at)
    }

    /// A part of an item of argument stream `stream`.
    ///
    /// # Errors
    ///
    /// As [`Streams::part`].
    pub(crate) fn part(
        &self,
        stream: u64,
        frame: &Bytes,
        body_at: usize,
    ) -> Result<(), ProtocolError> {
        self.streams.part(stream, frame, body_at)
    }

    /// The end of argument stream `stream`. One that failed on the caller's side (`error`)
    /// fails its call with that error: the handler is stopped, and the caller answered.
    ///
    /// # Errors
    ///
    /// As [`Streams::end`].
    pub(crate) fn end(
        &mut self,
        stream: u64,
        error: Option<WireError>,
    ) -> Result<(), ProtocolError> {
        self.streams.end(stream, error)
    }

    /// The caller is gone (end of stream or goodbye): nobody will read replies, so the calls
    /// are dropped; one-way calls run to completion.
    pub(crate) fn caller_gone(&mut self) {
        for (_, handle) in self.cancels.drain() {
            handle.abort();
        }
        lock(&self.answered).clear();
        self.streams.clear();
    }

    /// Shutting down: result streams do not end on their own, so those that have not ended end
    /// now, with a typed reason, behind the items already sent; a call whose handler has not
    /// returned its stream yet is stopped and answered `Stopped` (its client waits for a reply,
    /// not for an end).
    pub(crate) fn end_streams(&mut self) {
        for (id, sending) in self.streams.drain_sending() {
            if let Some(handle) = self.cancels.remove(&id) {
                handle.abort();
            }
            // Not `ShuttingDown` for a call not answered yet, which would say that it did not
            // run: this handler has started, and may have done part of its work.
            end_sending(
                &self.outbox,
                id,
                &sending,
                WireError::ShuttingDown,
                WireError::Stopped,
            );
        }
    }

    /// The caller is gone and this side stops serving it: the calls are dropped, as by
    /// [`Self::caller_gone`], and this waits for the one-way handlers, also those waiting their
    /// turn, to run to their end (dropping it drops them).
    pub(crate) async fn run_oneway_to_end(mut self) {
        self.caller_gone();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Drops every handler still running and waits for their tasks to end.
    pub(crate) async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Ends result stream `id` with `if_open` if its call was answered, else answers the call with
/// `if_opening`; nothing if its end already went out. Under the stream's gate: an item its
/// producer is sending on another thread goes out before the end, and none after it; a stream
/// is not ended twice; and a reply on its way is either sent before this or not at all.
fn end_sending(
    outbox: &Outbox,
    id: u64,
    sending: &Sending,
    if_open: WireError,
    if_opening: WireError,
) {
    let mut open = sending.gate.lock().unwrap_or_else(|e| e.into_inner());
    if !std::mem::replace(&mut *open, false) {
        return;
    }
    if sending.replied.load(std::sync::atomic::Ordering::Relaxed) {
        crate::stream::produce::end(outbox, id, Some(if_open));
    } else {
        let _ = outbox.send_encoded(failed(id, if_opening), true);
    }
}

/// Locks the list of answered calls; no update of it can panic half-way.
fn lock(answered: &Mutex<Vec<(u64, Id)>>) -> MutexGuard<'_, Vec<(u64, Id)>> {
    answered.lock().unwrap_or_else(|e| e.into_inner())
}
