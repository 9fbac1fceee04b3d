//! A sender that feeds a [`Stream`]: for producers that push items rather than being polled.

use std::fmt;

use tokio::sync::mpsc;

use crate::stream::Stream;

/// The sending half of [`Stream::channel`]. Cheap to clone; the stream ends when every clone
/// is dropped.
pub struct StreamSender<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// The receiving side of a [`StreamSender`] is gone; the item that could not be sent is given
/// back.
#[derive(thiserror::Error)]
#[error("the receiver of the stream is gone")]
pub struct SendError<T>(
    /// The item that was not sent.
    pub T,
);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<T> StreamSender<T> {
    /// Sends `item`, waiting while the stream's buffer is full (its receiver has no room).
    ///
    /// # Errors
    ///
    /// [`SendError`] with the item if the receiving side is gone: the stream was dropped, the
    /// peer stopped taking it, or the connection closed.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.tx.send(item).await.map_err(|e| SendError(e.0))
    }

    /// Sends `item` from a thread outside any async runtime, blocking while the buffer is
    /// full. Only for threads that no runtime drives (tokio panics otherwise).
    pub(crate) fn blocking_send(&self, item: T) -> Result<(), SendError<T>> {
        self.tx.blocking_send(item).map_err(|e| SendError(e.0))
    }

    /// Whether the receiving side is gone, so that [`StreamSender::send`] would fail.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the receiving side is gone: for a producer that should stop when nobody
    /// takes its items any more.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl<T> fmt::Debug for StreamSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

pub(super) fn channel<T: Send + 'static>(buffer: usize) -> (StreamSender<T>, Stream<T>) {
    let (tx, mut rx) = mpsc::channel(buffer.max(1));
    let items = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (StreamSender { tx }, Stream::new(items))
}
