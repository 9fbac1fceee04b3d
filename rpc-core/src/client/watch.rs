//! What a GUI or a session needs to know about one connection: whether its server is shutting
//! down, when it ends, and whether two handles share it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::client::handle::ClientHandle;
use crate::error::RpcError;

impl ClientHandle {
    /// Whether the server said it is shutting down: it takes no new calls on this connection
    /// (they fail with [`RpcError::ShuttingDown`]), answers those in flight, then closes.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.conn.shutting_down.load(Ordering::Acquire)
    }

    /// Waits until the server says it is shutting down ([`ClientHandle::is_shutting_down`]),
    /// or the connection is closed: for a GUI that tells its user the service is going away
    /// while the calls in flight still finish.
    pub async fn shutting_down(&self) {
        let conn = &self.shared.conn;
        loop {
            let said = conn.said_shutting_down.notified();
            let closed = conn.closed.notified();
            tokio::pin!(said, closed);
            said.as_mut().enable();
            closed.as_mut().enable();
            if self.is_shutting_down() || self.is_closed() {
                return;
            }
            tokio::select! {
                () = said => {}
                () = closed => {}
            }
        }
    }

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
