//! The server's end of a stream from the client: the items that arrived, the credit granted
//! back as the handler takes them, and the stop sent when the handler drops the stream.

use std::collections::VecDeque;
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
use crate::stream::credit::{Granted, Taken};
use crate::stream::parts::{kept, Finished, Partial};
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
    /// Items that arrived and have not been taken.
    items: VecDeque<Finished>,
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
                items: VecDeque::new(),
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
            let item = match state.partial.finish(frame, body_at, state.max_frame) {
                Ok(Finished::Whole { frame, body_at }) => Finished::Whole {
                    frame: kept(frame),
                    body_at,
                },
                Ok(parted) => parted,
                Err(_) => {
                    return Err(Refused::TooLarge {
                        max: state.max_frame,
                    })
                }
            };
            if state.stopped || state.cut {
                return Ok(());
            }
            state.items.push_back(item);
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
    state.items.clear();
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
    limits: DecodeLimits,
    /// The end was taken.
    done: bool,
}

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
            limits,
            done: false,
        }
    }

    /// The next item's frame and where its body starts, or `None` at the end.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Bytes, usize)>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut state = self.slot.lock();
        if state.cut {
            self.done = true;
            return Poll::Ready(None);
        }
        // A failed stream gives nothing more, not even its end, until it is cut.
        let next = match state.failure {
            None => state.items.pop_front(),
            Some(_) => None,
        };
        let Some(item) = next else {
            if state.ended && state.failure.is_none() {
                self.done = true;
                return Poll::Ready(None);
            }
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        };
        // Room for half the window again: grant it in one credit.
        let grant = self.taken.take(item.frame_len()).filter(|_| !state.ended);
        if let Some(bytes) = grant {
            state.credit.grant(bytes);
        }
        drop(state);
        if let Some(bytes) = grant {
            // At once if the connection is idle, as the client grants its credit.
            let _ = self.outbox.send_now(header_frame(&Header::Credit {
                stream: self.id,
                bytes,
            }));
        }
        // An item that came in parts is put together here, in the handler's task.
        Poll::Ready(Some(item.assemble()))
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
            state.items.clear();
            state.opened && !state.ended
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
        let Some((frame, body_at)) = std::task::ready!(incoming.poll_frame(cx)) else {
            return Poll::Ready(None);
        };
        let body = frame.get(body_at..).unwrap_or_default();
        let limits = incoming.limits;
        match crate::byte_buf::sharing(&frame, || decode::from_slice(body, &limits)) {
            Ok(item) => Poll::Ready(Some(item)),
            Err(error) => {
                tracing::debug!(id = incoming.id, %error, "stream item did not decode");
                incoming.fail(WireError::BadArguments((&error).into()));
                // The engine stops the handler and fails the call. A task the handler gave the
                // stream to waits until the call is over, and then sees its (cut) end.
                match incoming.poll_frame(cx) {
                    Poll::Ready(_) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
