//! Options that only Windows understands.

use crate::Endpoint;

/// Windows-only settings of an [`Endpoint`].
///
/// ```no_run
/// use rpc_transport::windows::EndpointExt;
/// # fn demo() -> Result<(), rpc_transport::ConnectError> {
/// // A service running as SYSTEM that ordinary users' programs call:
/// let endpoint = rpc_transport::Endpoint::new("my-service")?.allow_other_users(true);
/// # Ok(()) }
/// ```
pub trait EndpointExt: sealed::Sealed {
    /// Lets every local (authenticated) user connect to a server on this endpoint, not just the
    /// server's own user (and SYSTEM and administrators). For a Windows service that runs as
    /// SYSTEM and serves ordinary users: every local process can then call every method, so
    /// each handler must check [`rpc_core::CallContext`]'s peer itself, and one user holds at
    /// most [`rpc_core::ServerConfig::max_connections_per_user`] connections. Clients still
    /// refuse a pipe owned by anyone but their own user or SYSTEM.
    #[must_use]
    fn allow_other_users(self, allow: bool) -> Self;

    /// Whether every local user may connect (see [`EndpointExt::allow_other_users`]).
    fn allows_other_users(&self) -> bool;
}

impl EndpointExt for Endpoint {
    fn allow_other_users(mut self, allow: bool) -> Self {
        self.set_other_users_allowed(allow);
        self
    }

    fn allows_other_users(&self) -> bool {
        self.other_users_allowed()
    }
}

mod sealed {
    /// Only this crate's types take the extension.
    pub trait Sealed {}
    impl Sealed for crate::Endpoint {}
}
