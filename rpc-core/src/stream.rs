//! Streams from server to client: what a stream method returns.
//!
//! A method declared `async fn watch(&self, ..) -> rpc_core::Stream<T>` returns a [`Stream`]
//! made from any [`futures_util::Stream`] of `T`; the client gets a
//! [`StreamReceiver<T>`](crate::StreamReceiver) that yields each item as
//! `Result<T, RpcError>`. How items travel (credit, cancellation, ends) is described on
//! [`StreamReceiver`](crate::StreamReceiver).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use serde::Serialize;

use crate::frame::encode::EncodedResult;
use crate::protocol::WireError;

/// The stream a stream method returns: any stream of serializable items, sent to the client as
/// it grants credit.
///
/// ```
/// let ticks = rpc_core::Stream::new(futures_util::stream::iter(1..=3u32));
/// # let _ = ticks;
/// ```
pub struct Stream<T> {
    inner: Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'static>>,
}

impl<T> Stream<T> {
    /// A stream of `items`. The server polls it only when the client has room for the next
    /// item, and drops it when the client drops its receiver or the connection closes.
    pub fn new(items: impl futures_util::Stream<Item = T> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(items),
        }
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
}

impl<T: Serialize + Send + 'static> Stream<T> {
    /// The items, encoded one by one as they are taken.
    pub(crate) fn into_source(self) -> ItemSource {
        ItemSource(Box::pin(self.inner.map(|item| {
            EncodedResult::encode(&item).map_err(|_| WireError::EncodeFailed)
        })))
    }
}

impl<T> fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

type Encoded = Result<EncodedResult, WireError>;

/// A stream's items, encoded, for the server engine.
pub struct ItemSource(Pin<Box<dyn futures_util::Stream<Item = Encoded> + Send + 'static>>);

impl futures_util::Stream for ItemSource {
    type Item = Encoded;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Encoded>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ItemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemSource").finish_non_exhaustive()
    }
}
