//! The server's end of a stream from the client: the items that arrived, the credit granted
//! back as the handler takes them, and the stop sent when the handler drops the stream.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::decode::{self, DecodeLimits};
use crate::error::ProtocolError;
use crate::frame::header_frame;
use crate::protocol::{Header, WireError};
use crate::stream::arrived::{Arrived, Item};
use crate::stream::credit::{Granted, Taken};
use crate::stream::parts::Partial;
use crate::writer::Outbox;

/// Why a frame of a stream from the client breaks the protocol.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It starts an item, and the client had no credit left.
    OverCredit,
    /// It makes an item in parts longer than the maximum frame, `max` bytes.
    TooLarge {
        /// The server's maximum frame.
        max: u32,
    },
    /// It ends the stream in the middle of an item in parts.
    InsideItem,
}

impl Refused {
    /// The protocol error of this refusal on stream `stream`.
    pub(crate) fn at(self, stream: u64) -> ProtocolError {
        match self {
            Refused::OverCredit => ProtocolError::CreditExceeded { stream },
            Refused::TooLarge { max } => ProtocolError::ItemTooLarge { stream, max },
            Refused::InsideItem => ProtocolError::EndInsideItem { stream },
        }
    }
}

/// One stream from the client, shared by the connection (which puts items in) and the
/// handler's [`Incoming`] (which takes them out).
pub(crate) struct Inbound {
    state: Mutex<State>,
    /// Wakes the engine when an item did not decode.
    failed: Notify,
}

struct State {
    /// Items that arrived and have not been moved to the handler's side.
    items: Arrived,
    /// The credit the client holds.
    credit: Granted,
    /// The item arriving in parts, if one is.
    partial: Partial,
    /// The server's maximum frame, which an item in parts must not exceed either.
    max_frame: u32,
    /// The client ended the stream.
    ended: bool,
    /// The server told the client that the stream is open (its first credit): until then the
    /// client sends nothing, and a handler dropped before it (its call refused) owes no stop.
    opened: bool,
    /// The handler dropped the stream: what arrives is discarded.
    stopped: bool,
    /// The call is over without the client's end (cancelled, failed, or its connection gone):
    /// whoever still holds the stream sees it end, cut.
    cut: bool,
    /// The engine is done with the call (its handler, and its result stream if it has one,
    /// finished or were dropped): a cut or a failure from now on cuts the stream at once.
    over: bool,
    /// The stream is to be cut once the call is over: a handler still running (maybe on
    /// another thread, past its abort) must not see a cut stream end as if it were whole.
    cut_when_over: bool,
    waker: Option<Waker>,
    /// Why the stream failed on this side (an item that did not decode).
    failure: Option<WireError>,
}

impl Inbound {
    /// A stream whose client holds `window` bytes of credit, on a server whose maximum frame
    /// is `max_frame`.
    pub(crate) fn new(window: u32, max_frame: u32) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items: Arrived::default(),
                credit: Granted::new(window),
                partial: Partial::default(),
                max_frame,
                ended: false,
                opened: false,
                stopped: false,
                cut: false,
                over: false,
                cut_when_over: false,
                waker: None,
                failure: None,
            }),
            failed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An item arrived, or the last frame of one that arrived in parts.
    ///
    /// # Errors
    ///
    /// [`Refused::OverCredit`] if the client had no credit left for it,
    /// [`Refused::TooLarge`] if it ends an item in parts longer than the maximum frame.
    pub(crate) fn push(&self, frame: Bytes, body_at: usize) -> Result<(), Refused> {
        let waker = {
            let mut state = self.lock();
            let state = &mut *state;
            if state.partial.started() {
                state.credit.spend_last(frame.len());
            } else {
                state
                    .credit
                    .spend(frame.len())
                    .map_err(|_| Refused::OverCredit)?;
            }
            let Ok(item) = state.partial.finish(frame, body_at, state.max_frame) else {
                return Err(Refused::TooLarge {
                    max: state.max_frame,
                });
            };
            if state.stopped || state.cut {
                return Ok(());
            }
            // A short item is copied after the others (see `Arrived`).
            state.items.push_finished(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// A part of an item arrived: `body`, of an item whose frame has `header_len` bytes of
    /// header.
    ///
    /// # Errors
    ///
    /// [`Refused::OverCredit`] if the part starts an item and the client had no credit left
    /// for it, [`Refused::TooLarge`] if the item is already longer than the maximum frame.
    pub(crate) fn push_part(&self, body: Bytes, header_len: usize) -> Result<(), Refused> {
        let mut state = self.lock();
        let state = &mut *state;
        let first = !state.partial.started();
        state
            .credit
            .spend_part(body.len(), first)
            .map_err(|_| Refused::OverCredit)?;
        state
            .partial
            .push(body, header_len, state.max_frame)
            .map_err(|_| Refused::TooLarge {
                max: state.max_frame,
            })
    }

    /// The client ended the stream.
    ///
    /// # Errors
    ///
    /// [`Refused::InsideItem`] if an item was arriving in parts.
    pub(crate) fn end(&self) -> Result<(), Refused> {
        let waker = {
            let mut state = self.lock();
            if state.partial.started() {
                return Err(Refused::InsideItem);
            }
            state.ended = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The client is told that the stream is open: from now on, a handler that drops the
    /// stream before its end tells the client to stop.
    pub(crate) fn open(&self) {
        self.lock().opened = true;
    }

    /// The stream failed (an item did not decode, or the client's side of it failed): the
    /// engine fails the call, or ends its result stream, with `error`. The handler never sees
    /// an end, which would pass a cut stream for a whole one: the stream takes no more items,
    /// and is cut once the call is over, for a task the handler gave it to.
    pub(crate) fn fail(&self, error: WireError) {
        let waker = {
            let mut state = self.lock();
            state.failure.get_or_insert(error);
            if state.over {
                cut(&mut state)
            } else {
                None
            }
        };
        self.failed.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The engine is done with the call: a stream that failed or was to be cut is cut, and
    /// one that fails or is cut later will be at once, for a task the handler gave it to.
    fn call_over(&self) {
        let waker = {
            let mut state = self.lock();
            state.over = true;
            if state.failure.is_some() || state.cut_when_over {
                cut(&mut state)
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The client ended the stream with `error` (its side of it failed): the call fails with
    /// it, as with [`Inbound::fail`], and the stream is closed on both sides (no stop is owed).
    pub(crate) fn end_with(&self, error: WireError) {
        self.lock().opened = false;
        self.fail(error);
    }

    /// The call is over before the client's end (cancelled, or its connection gone): the
    /// stream ends for whoever still holds it (a task the handler gave it to), and
    /// [`crate::Stream::is_cut`] says so; at once if the engine is done with the call, else
    /// once it is (a handler being stopped may still be running its last poll).
    pub(crate) fn cut(&self) {
        let waker = {
            let mut state = self.lock();
            if state.over {
                cut(&mut state)
            } else {
                state.cut_when_over = true;
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the stream was cut ([`Inbound::cut`]).
    pub(crate) fn is_cut(&self) -> bool {
        self.lock().cut
    }

    /// Waits until the stream fails, and returns why.
    pub(crate) async fn failure(&self) -> WireError {
        loop {
            let notified = self.failed.notified();
            if let Some(error) = self.lock().failure.clone() {
                return error;
            }
            notified.await;
        }
    }
}

/// Cuts the stream (see [`Inbound::cut`]) unless the client ended it and nothing failed;
/// returns the waker of whoever waits for its next item.
fn cut(state: &mut State) -> Option<Waker> {
    if state.ended && state.failure.is_none() {
        return None;
    }
    state.cut = true;
    state.items = Arrived::default();
    state.waker.take()
}

/// Held by the engine while it may still stop a call's handler (or its result stream), which
/// would drop the call's stream from the client; dropped, it lets a failure of that stream cut
/// it for a task the handler gave it to.
pub(crate) struct CallOver(pub(crate) Arc<Inbound>);

impl Drop for CallOver {
    fn drop(&mut self) {
        self.0.call_over();
    }
}

/// The items of a stream from the client, as the engine hands them to a dispatcher:
/// [`crate::Stream::incoming`] makes the handler's typed stream of it.
///
/// Taking items grants the client credit for more (half the window at a time); dropping it
/// before the stream's end tells the client to stop.
pub struct Incoming {
    slot: Arc<Inbound>,
    id: u64,
    outbox: Outbox,
    /// What the handler took since credit was last granted.
    taken: Taken,
    /// Items moved out of the shared state together, to be taken one by one.
    ready: Arrived,
    limits: DecodeLimits,
    /// The end was taken.
    done: bool,
}

/// Bytes of an item that came in parts that a handler's stream puts together before it
/// yields: a long item copied at once would hold the handler's thread from other tasks.
const ASSEMBLY_STEP: usize = 128 * 1024;

impl Incoming {
    pub(crate) fn new(
        slot: Arc<Inbound>,
        id: u64,
        outbox: Outbox,
        window: u32,
        limits: DecodeLimits,
    ) -> Self {
        Self {
            slot,
            id,
            outbox,
            taken: Taken::new(window),
            ready: Arrived::default(),
            limits,
            done: false,
        }
    }

    /// The next item, as `decode` makes it, or `None` at the end. An item that came in parts
    /// is put together here, in the handler's task, a step at a time.
    fn poll_item<U>(
        &mut self,
        cx: &mut Context<'_>,
        decode: impl FnOnce(&Item<'_>) -> U,
    ) -> Poll<Option<U>> {
        if self.done {
            return Poll::Ready(None);
        }
        {
            let mut state = self.slot.lock();
            if state.cut {
                self.done = true;
                self.ready = Arrived::default();
                return Poll::Ready(None);
            }
            // A failed stream gives nothing more, not even its end, until it is cut.
            let waiting = if state.failure.is_some() {
                true
            } else if !self.ready.is_empty() {
                false
            } else if !state.items.is_empty() {
                self.ready.let_go();
                std::mem::swap(&mut state.items, &mut self.ready);
                false
            } else if state.ended {
                self.done = true;
                return Poll::Ready(None);
            } else {
                true
            };
            if waiting {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        if self.ready.assemble_some(ASSEMBLY_STEP) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(item) = self.ready.pop() else {
            // Not reached: the items were there a moment ago, and only this side takes them.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        let decoded = decode(&item);
        // Room for half the window again: grant it in one credit.
        if let Some(bytes) = self.taken.take(item.frame_len) {
            let granted = {
                let mut state = self.slot.lock();
                // A stream cut with its call is forgotten: its id may be the client's next.
                let open = !state.ended && !state.cut && !state.cut_when_over;
                if open {
                    state.credit.grant(bytes);
                }
                open
            };
            if granted {
                // At once if the connection is idle, as the client grants its credit.
                let _ = self.outbox.send_now(header_frame(&Header::Credit {
                    stream: self.id,
                    bytes,
                }));
            }
        }
        Poll::Ready(Some(decoded))
    }

    /// The stream's shared state, which tells whether it was cut.
    pub(crate) fn slot(&self) -> Arc<Inbound> {
        Arc::clone(&self.slot)
    }

    /// An item did not decode: the engine fails the call with `error`.
    fn fail(&mut self, error: WireError) {
        self.slot.fail(error);
    }

    /// The items decoded as `T`.
    pub(crate) fn decoded<T: DeserializeOwned>(self) -> Decoded<T> {
        Decoded {
            incoming: self,
            _items: PhantomData,
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let stop = {
            let mut state = self.slot.lock();
            state.stopped = true;
            state.items = Arrived::default();
            // Not for a stream cut with its call, which the engine has forgotten: its id may
            // already be the client's next call's, whose stream the stop would end.
            state.opened && !state.ended && !state.cut && !state.cut_when_over
        };
        if stop {
            let _ = self
                .outbox
                .send(header_frame(&Header::StreamStop { stream: self.id }));
        }
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("window", &self.taken.window())
            .finish_non_exhaustive()
    }
}

/// The items of an [`Incoming`], decoded.
pub(crate) struct Decoded<T> {
    incoming: Incoming,
    _items: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> futures_util::Stream for Decoded<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let incoming = &mut self.get_mut().incoming;
        let limits = incoming.limits;
        let decoded = std::task::ready!(incoming.poll_item(cx, |item| match item.frame {
            Some(frame) =>
                crate::byte_buf::sharing(frame, || decode::from_slice(item.body, &limits)),
            None => decode::from_slice(item.body, &limits),
        }));
        match decoded {
            None => Poll::Ready(None),
            Some(Ok(item)) => Poll::Ready(Some(item)),
            Some(Err(error)) => {
                tracing::debug!(id = incoming.id, %error, "stream item did not decode");
                incoming.fail(WireError::BadArguments((&error).into()));
                // The engine stops the handler and fails the call. A task the handler gave the
                // stream to waits until the call is over, and then sees its (cut) end.
                match incoming.poll_item(cx, |_| ()) {
                    Poll::Ready(_) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that takes none of an upload's tiny items holds about what their credit
    /// counts, however many there are: they are copied one after the other, not each into an
    /// allocation of its own (which for items of a few bytes took about 1.7 times the window).
    #[test]
    fn tiny_items_held_stay_within_the_window() {
        let window = 64 * 1024;
        let inbound = Inbound::new(window, 1 << 20);
        let mut items = 0;
        // A frame of a one-byte header and a four-byte body, until the credit runs out.
        while inbound
            .push(Bytes::from_static(&[1, 0, 0, 0, 7]), 1)
            .is_ok()
        {
            items += 1;
        }
        let held = inbound.lock().items.held();
        assert!(items > 900, "{items} items");
        assert!(
            held <= window as usize,
            "{items} items of 5 bytes hold {held} bytes"
        );
    }
}
