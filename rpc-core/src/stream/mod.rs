//! Streams: what a stream method returns, and what a method that takes a stream receives.
//!
//! A method declared `async fn watch(&self, ..) -> rpc_core::Stream<T>` returns a [`Stream`]
//! made from any [`futures_util::Stream`] of `T`; the client gets a
//! [`StreamReceiver<T>`](crate::StreamReceiver) that yields each item as
//! `Result<T, RpcError>`. A method declared `async fn upload(&self, chunks: rpc_core::Stream<T>)`
//! takes a stream from the client: the generated client method takes any
//! `futures_util::Stream<Item = T>`, and the handler gets a [`Stream`] of the items as they
//! arrive. How items travel (credit, cancellation, ends) is described on
//! [`StreamReceiver`](crate::StreamReceiver) and in the [protocol](crate::protocol#streams).

pub(crate) mod arrived;
pub(crate) mod batch;
mod channel;
pub(crate) mod credit;
mod incoming;
pub(crate) mod parts;
pub(crate) mod produce;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::WireError;
use crate::stream::batch::Batch;

pub use channel::{SendError, StreamSender};
pub use incoming::Incoming;
pub(crate) use incoming::{CallOver, Inbound};

/// A stream of items that travels between client and server: what a stream method returns,
/// and what a method that takes a stream receives.
///
/// Made from any stream of items, from an iterator, or as the receiving half of
/// [`Stream::channel`]. It is itself a [`futures_util::Stream`] of `T`.
///
/// ```
/// let ticks = rpc_core::Stream::new(futures_util::stream::iter(1..=3u32));
/// # let _ = ticks;
/// ```
///
/// **As an argument.** A handler's argument stream yields the client's items as they arrive
/// and ends (`None`) when the client's stream ends. The client starts an item only when the
/// handler has room (`ServerConfig::stream_window`, in bytes), so an upload costs the server at
/// most that window and one item in memory. An item that does not decode stops the handler: the call
/// fails with [`WireError::BadArguments`]. A handler that drops the stream before its end stops
/// the client's sending side (a [`StreamSender`] then fails). If the client cancels the call or
/// goes away, the handler is dropped, as for any call.
///
/// A handler may give its argument stream to a task of its own, which may outlive the call. If
/// the call is answered before the client ends the stream (the client then sends no more of
/// it), is cancelled or fails, or its connection closes, that task sees the stream end as soon
/// as the handler is stopped, rather than wait forever; [`Stream::is_cut`] tells such an end
/// from the client's. The handler itself never sees a cut stream end: it is stopped first.
pub struct Stream<T> {
    inner: Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'static>>,
    /// The state of a stream from the client, which tells whether it was cut.
    from_client: Option<Arc<Inbound>>,
}

impl<T> Stream<T> {
    /// A stream of `items`. It is polled only when the receiver has room for the next item,
    /// and dropped when the receiver drops its end or the connection closes.
    pub fn new(items: impl futures_util::Stream<Item = T> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(items),
            from_client: None,
        }
    }

    /// Whether the stream ended because its call was over before the client ended it (the call
    /// was cancelled or failed, or its connection closed), rather than at the client's end. A
    /// cut stream yields `None` like a whole one: a task that keeps a handler's argument stream
    /// asks this once it ends. Always `false` for a stream made on this side, and while the
    /// stream is open.
    pub fn is_cut(&self) -> bool {
        self.from_client.as_ref().is_some_and(|slot| slot.is_cut())
    }

    /// A stream of the items of `items`, one after the other.
    pub fn iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(futures_util::stream::iter(items))
    }

    /// A stream with no items.
    pub fn empty() -> Self
    where
        T: Send + 'static,
    {
        Self::new(futures_util::stream::empty())
    }

    /// A stream fed by a sender: items sent on the [`StreamSender`] are the stream's items, and
    /// the stream ends when every sender is dropped. At most `buffer` items (at least one) wait
    /// between sender and stream; past that, [`StreamSender::send`] waits.
    ///
    /// The sender learns when the receiving side is gone (the client dropped its receiver, the
    /// server's handler dropped its argument stream, or the connection closed):
    /// [`StreamSender::send`] then fails with [`SendError`].
    pub fn channel(buffer: usize) -> (StreamSender<T>, Self)
    where
        T: Send + 'static,
    {
        channel::channel(buffer)
    }
}

impl<T: DeserializeOwned + Send + 'static> Stream<T> {
    /// The stream of a client's items, for a dispatcher: items decode as `T` as they are taken.
    pub fn incoming(incoming: Incoming) -> Self {
        let slot = incoming.slot();
        Self {
            from_client: Some(slot),
            ..Self::new(incoming.decoded::<T>())
        }
    }
}

impl<T: Serialize + Send + 'static> Stream<T> {
    /// The items, encoded one by one as they are taken.
    pub(crate) fn into_source(self) -> ItemSource {
        ItemSource(Box::new(self))
    }
}

impl<T> futures_util::Stream for Stream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T> fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

/// A stream's items, for the engines, which encode each into a [`Batch`] as they take it.
pub struct ItemSource(Box<dyn Source>);

impl ItemSource {
    /// Polls for the next item and appends its frame to `batch`: `Some(Ok(len))` with the
    /// frame's length as its prefix gives it, `Some(Err(..))` if the item did not encode (the
    /// batch is left as it was), `None` at the end. A pending poll leaves the batch alone.
    pub(crate) fn poll_into(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Option<Result<u32, WireError>>> {
        self.0.poll_into(cx, batch)
    }
}

/// A stream whose items can be encoded, with its item type erased.
trait Source: Send {
    /// As [`ItemSource::poll_into`].
    fn poll_into(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Option<Result<u32, WireError>>>;
}

impl<T: Serialize + Send + 'static> Source for Stream<T> {
    fn poll_into(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Option<Result<u32, WireError>>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(batch.push(&item))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for ItemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemSource").finish_non_exhaustive()
    }
}
