//! What a session needs to know about one connection: when it ends, and whether two handles
//! share it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::client::handle::ClientHandle;
use crate::error::RpcError;

impl ClientHandle {
    /// Waits until the connection ends, and returns why.
    pub(crate) async fn ended(&self) -> RpcError {
        self.closed().await;
        self.closed_error()
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
