//! What a session needs to know about one connection: when it ends, and whether two handles
//! share it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::client::handle::ClientHandle;
use crate::client::pending::StreamSlot;
use crate::error::RpcError;

/// Forgets the watch slot when the watcher stops waiting.
struct Unwatch<'a> {
    handle: &'a ClientHandle,
    id: u64,
}

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.handle.shared.conn.lock().streams.remove(&self.id);
    }
}

impl ClientHandle {
    /// Waits until the connection ends, and returns why.
    ///
    /// The watch is a stream slot under an id that is never sent: the connection's end
    /// finishes every stream slot with its error and wakes the receiver, as it does for real
    /// streams. A server that ends or feeds that id breaks the protocol (it never opened it);
    /// the watch then goes on under a new id.
    pub(crate) async fn closed(&self) -> RpcError {
        loop {
            let id = self.next_id();
            {
                let mut pending = self.shared.conn.lock();
                if let Some(error) = &pending.closed {
                    return error.clone();
                }
                pending.streams.insert(id, StreamSlot::new(0));
            }
            let _unwatch = Unwatch { handle: self, id };
            let end = std::future::poll_fn(|cx| self.poll_stream(id, cx)).await;
            if let Some(Err(error)) = end {
                return error;
            }
        }
    }

    /// Whether the server said it is shutting down: it takes no new calls on this connection.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shared.conn.shutting_down.load(Ordering::Acquire)
    }

    /// Whether `other` is a handle to the same connection.
    pub(crate) fn same_connection(&self, other: &ClientHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
