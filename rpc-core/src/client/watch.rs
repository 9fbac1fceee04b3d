//! What a session needs to know about one connection: when it ends, and whether two handles
//! share it.

use std::sync::Arc;

use crate::client::handle::ClientHandle;
use crate::error::RpcError;

impl ClientHandle {
    /// Waits until the connection ends, and returns why.
    pub(crate) async fn ended(&self) -> RpcError {
        self.closed().await;
        self.closed_error()
    }

    /// Whether `other` is a handle to the same connection.
    pub(crate) fn same_connection(&self, other: &ClientHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
