//! The client's end of a stream from the server.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use crate::client::handle::ClientHandle;
use crate::error::RpcError;

/// The items of a stream the server sends, as a [`futures_util::Stream`] of
/// `Result<T, RpcError>`: what a client's stream method returns once the stream is open.
///
/// * **Flow control.** The server sends an item only when this receiver has room for it: at
///   most the client's stream window (`ClientConfig::stream_window`, default 16) are on their
///   way or waiting here; taking items grants the server more. A receiver that stops taking
///   items stops the server's stream, which is not polled until there is room.
/// * **Cancellation by drop.** Dropping the receiver tells the server, which drops its stream.
/// * **Typed ends.** `None` when the server's stream ended; an `Err` item (then `None`) when it
///   failed: the server's stream panicked, an item could not be encoded or decoded, the server
///   is shutting down ([`crate::protocol::WireError::ShuttingDown`]), or the connection closed
///   ([`RpcError::ConnectionClosed`], [`RpcError::PeerExited`], ...).
///
/// It holds a handle of the client, so the connection stays open while the receiver lives.
pub struct StreamReceiver<T> {
    handle: ClientHandle,
    id: u64,
    window: u32,
    /// Items taken since credit was last granted.
    taken: u32,
    done: bool,
    _items: PhantomData<fn() -> T>,
}

impl<T> StreamReceiver<T> {
    pub(super) fn new(handle: ClientHandle, id: u64, window: u32) -> Self {
        Self {
            handle,
            id,
            window,
            taken: 0,
            done: false,
            _items: PhantomData,
        }
    }

    fn finish(&mut self, cancel: bool) {
        if !self.done {
            self.done = true;
            self.handle.close_stream(self.id, cancel);
        }
    }
}

impl<T: DeserializeOwned> futures_util::Stream for StreamReceiver<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match std::task::ready!(this.handle.poll_stream(this.id, cx)) {
            Some(Ok(item)) => {
                let decoded = this.handle.decode_item(&item);
                if decoded.is_err() {
                    // The server sends what this side cannot read: stop the stream.
                    this.finish(true);
                    return Poll::Ready(Some(decoded));
                }
                this.taken += 1;
                // Room for half the window again: tell the server, in one credit.
                if this.taken >= this.window.div_ceil(2) {
                    this.handle.grant(this.id, this.taken);
                    this.taken = 0;
                }
                Poll::Ready(Some(decoded))
            }
            Some(Err(error)) => {
                this.finish(false);
                Poll::Ready(Some(Err(error)))
            }
            None => {
                this.finish(false);
                Poll::Ready(None)
            }
        }
    }
}

impl<T> Drop for StreamReceiver<T> {
    fn drop(&mut self) {
        self.finish(true);
    }
}

impl<T> fmt::Debug for StreamReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("id", &self.id)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
