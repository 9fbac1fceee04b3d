//! The client's side of a call's argument stream: the task that sends its items as the server
//! grants credit, and the calls that take a stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::client::handle::ClientHandle;
use crate::error::RpcError;
use crate::frame::{header_frame, Encoded};
use crate::protocol::Header;
use crate::service::MethodDescriptor;
use crate::stream::produce::{end_once, produce};
use crate::stream::ItemSource;
use crate::writer::Outbox;
use crate::{Stream, StreamReceiver};

/// What the reader task and the sending task share about one argument stream.
pub(super) struct Outgoing {
    /// Bytes the server has granted and the stream not spent; closed when the server stops it.
    pub(super) credit: Semaphore,
    /// The server has granted credit: the stream is open on its side, and must be ended.
    pub(super) opened: AtomicBool,
    /// Whether items may still be sent; held while one is, so that none follows a cancel.
    pub(super) gate: Mutex<bool>,
    /// The server stopped the stream. Closing `credit` wakes only a sending task that waits
    /// for credit; this wakes one that waits for the stream's next item too, so that the
    /// stream is dropped and its sender sees the stop at once.
    stopped: CancellationToken,
}

impl Outgoing {
    /// The server stopped the stream: the sending task ends it and drops it, whether it waits
    /// for credit or for the next item.
    pub(super) fn stop(&self) {
        self.credit.close();
        self.stopped.cancel();
    }

    /// Sends nothing more: returns the gate, held until the cancel is sent.
    pub(super) fn close(&self) -> MutexGuard<'_, bool> {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        *gate = false;
        gate
    }

    /// Sends nothing more, and cancels call `id`'s stream if the server opened it and neither
    /// its end nor a cancel went first: queued now, so that a stream opened next goes out
    /// behind it (the server counts this one against its limit until the cancel arrives).
    fn cancel_if_open(&self, id: u64, outbox: &Outbox) {
        if !self.opened.load(Ordering::Acquire) {
            return;
        }
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *gate, false) {
            let cancel = header_frame(&Header::Cancel { id });
            let _ = outbox.send_bulk_one(Encoded::One(cancel));
        }
    }
}

/// The sending side of one call's argument stream. Dropped or [`finish`](Upload::finish)ed, it
/// stops sending without an end, and cancels a stream the server opened that has not ended
/// (unless the call's own cancel went first): the server forgets it, whether the call was
/// answered or its caller is gone.
pub(super) struct Upload {
    handle: ClientHandle,
    id: u64,
    outgoing: Arc<Outgoing>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upload {
    /// Starts sending `source` as the argument stream of call `id`, which is about to be sent:
    /// items go out once the server grants credit.
    pub(super) fn start(handle: &ClientHandle, id: u64, source: ItemSource) -> Self {
        let shared = &handle.shared;
        let outgoing = Arc::new(Outgoing {
            credit: Semaphore::new(0),
            opened: AtomicBool::new(false),
            gate: Mutex::new(true),
            stopped: CancellationToken::new(),
        });
        shared
            .conn
            .lock()
            .outgoing
            .insert(id, Arc::clone(&outgoing));
        let (stop, stopped) = oneshot::channel();
        let outbox = shared.outbox.clone();
        let (max_frame, in_parts) = (shared.server_max_frame, outbox.accepts_parts());
        let conn = Arc::clone(&shared.conn);
        let kept = Arc::clone(&outgoing);
        tokio::spawn(async move {
            tokio::select! {
                () = produce(source, id, &outgoing.credit, &outbox, (max_frame, in_parts), Some(&outgoing.gate)) => {}
                // The connection is gone: nothing more can be sent, and the source is dropped,
                // so that a sender sees the end even while the items it waits on are not read.
                () = conn.until_closed() => {}
                // Stopped by the server: ended as `produce` ends a stream whose credit is
                // closed (the server waits for that end to forget the stream), unless a cancel
                // went first.
                () = outgoing.stopped.cancelled() => end_once(&outbox, id, None, &outgoing.gate),
                _ = stopped => {
                    // Answered before the stream's end, or its caller gone (also one that stopped
                    // waiting after the call had its outcome, which sends no cancel of its own):
                    // the rest is not sent, and a stream the server opened is cancelled with its
                    // call (not ended, which would pass it for whole), so that the server
                    // forgets it and shows it cut to whoever still holds it. A cancel that went
                    // first (the call's, or the one `finish` queued) has closed the gate.
                    outgoing.cancel_if_open(id, &outbox);
                }
            }
        });
        Self {
            handle: handle.clone(),
            id,
            outgoing: kept,
            stop: Some(stop),
        }
    }

    /// The call was answered (or its result stream ended): the stream stops, and is cancelled
    /// with its call if the server opened it and it has not ended. The cancel is queued before
    /// this returns, ahead of whatever the caller sends next.
    pub(super) fn finish(mut self) {
        self.outgoing
            .cancel_if_open(self.id, &self.handle.shared.outbox);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.handle.shared.conn.lock().outgoing.remove(&self.id);
    }
}

impl ClientHandle {
    /// Calls a method that takes a stream from the client and whose result is a plain `T`:
    /// `upload`'s items are sent as the server takes them, and the call returns once the
    /// server answers (its handler may answer before the stream ends; the rest is not sent).
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call`]. An item that cannot be encoded (or an upload stream that
    /// panics) ends the upload with that error and nothing more sent: the server stops the
    /// handler, which never sees a cut stream as a whole one, and fails the call with
    /// [`RpcError::Remote`] of that error (for instance [`WireError::EncodeFailed`]).
    ///
    /// [`WireError::EncodeFailed`]: crate::protocol::WireError::EncodeFailed
    pub async fn call_uploading<A, I, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<T, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
    {
        let id = self.next_id();
        let upload = Upload::start(self, id, upload.into_source());
        let reply = self.request_with(id, method, args, None).await?;
        upload.finish();
        self.value(method, &reply)
    }

    /// Calls a method that takes a stream from the client and is declared as returning
    /// `Result<T, E>`; see [`ClientHandle::call_uploading`].
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call_uploading`].
    pub async fn call_fallible_uploading<A, I, T, E>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<Result<T, E>, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let id = self.next_id();
        let upload = Upload::start(self, id, upload.into_source());
        let reply = self.request_with(id, method, args, None).await?;
        upload.finish();
        self.fallible(method, &reply)
    }

    /// Opens a stream from the server by calling a method that also takes a stream from the
    /// client: both flow at once, each within its receiver's credit. The upload goes on until
    /// it ends, the server stops it, or the returned receiver ends or is dropped.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::open_stream`].
    pub async fn open_stream_uploading<A, I, T>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        upload: Stream<I>,
    ) -> Result<StreamReceiver<T>, RpcError>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        T: DeserializeOwned,
    {
        let id = self.next_id();
        let upload = Upload::start(self, id, upload.into_source());
        self.open(id, method, args, Some(upload)).await
    }
}
