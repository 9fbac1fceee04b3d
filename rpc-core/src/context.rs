//! What a handler can know about the call it serves.

use std::fmt;
use std::sync::{Arc, Weak};

use tokio::time::Instant;

use crate::client::handle::Shared;
use crate::client::{Client, ClientHandle};

/// Who is on the other end of a connection, as far as the transport can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's process id.
    pub pid: Option<u32>,
    /// The peer's user id (Unix).
    pub uid: Option<u32>,
    /// The peer's user SID in string form (Windows): read from the connection itself (the
    /// identity the client connected with, which needs no right on its process), else from
    /// the peer's process where the server may query it.
    pub sid: Option<String>,
}

impl PeerInfo {
    /// A peer whose identity is unknown (an in-memory transport, a pipe pair, a child's stdio
    /// where the system cannot tell).
    pub fn unknown() -> Self {
        Self::default()
    }

    /// A peer known by process and user id.
    pub fn unix(pid: Option<u32>, uid: Option<u32>) -> Self {
        Self {
            pid,
            uid,
            sid: None,
        }
    }

    /// A peer known by process id and user SID.
    pub fn windows(pid: Option<u32>, sid: Option<String>) -> Self {
        Self {
            pid,
            uid: None,
            sid,
        }
    }
}

/// Shows what is known, for logs: `pid 5969, uid 1000`, `pid 5969, user S-1-5-21-…`, or
/// `unknown peer` when nothing is.
impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        if let Some(pid) = self.pid {
            write!(f, "pid {pid}")?;
            separator = ", ";
        }
        if let Some(uid) = self.uid {
            write!(f, "{separator}uid {uid}")?;
            separator = ", ";
        }
        if let Some(sid) = &self.sid {
            return write!(f, "{separator}user {sid}");
        }
        if separator.is_empty() {
            f.write_str("unknown peer")?;
        }
        Ok(())
    }
}

/// The context of the call being handled: the peer and the deadline.
///
/// Read it with [`CallContext::current`] from inside a handler.
#[derive(Clone)]
pub struct CallContext {
    peer: Arc<PeerInfo>,
    deadline: Option<Instant>,
    request_id: Option<u64>,
    method: &'static str,
    /// The connection's way back to the caller.
    link: Option<Weak<Shared>>,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("peer", &self.peer)
            .field("deadline", &self.deadline)
            .field("request_id", &self.request_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why [`CallContext::callbacks`] has no client to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Not called from inside a handler ([`CallContext::current`] is `None`).
    #[error("not inside a call: callbacks are reached from a handler's context")]
    NotInCall,
    /// The service declares no callbacks (`#[service(callbacks = Trait)]`), so the client
    /// serves none.
    #[error("the service declares no callbacks")]
    NoCallbacks,
    /// The connection serves another service on its other side than the one asked for.
    #[error("the caller serves {served:?}, not {requested:?}")]
    WrongService {
        /// The service asked for.
        requested: &'static str,
        /// The service the other side serves.
        served: &'static str,
    },
    /// The caller has disconnected.
    #[error("the caller has disconnected")]
    Disconnected,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    pub(crate) fn new(
        peer: Arc<PeerInfo>,
        deadline: Option<Instant>,
        request_id: Option<u64>,
        method: &'static str,
        link: Option<Weak<Shared>>,
    ) -> Self {
        Self {
            peer,
            deadline,
            request_id,
            method,
            link,
        }
    }

    /// The context of the call this task is handling, or `None` outside a handler (including in
    /// tasks the handler spawned: pass the context along by value if they need it).
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Who called.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// When the caller stops waiting; the server drops the handler at that point.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The request id of the call (`None` for one-way calls).
    pub fn request_id(&self) -> Option<u64> {
        self.request_id
    }

    /// The method's name.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// A typed client of the other side of this call's connection: on a server, the
    /// callbacks its client serves (the service named by `#[service(callbacks = Trait)]`); in
    /// a client's callback, the server, to call it again. Its calls carry the deadline of
    /// this call at the latest (when it has one), and fail with
    /// [`crate::RpcError::ConnectionClosed`] once the caller has disconnected, also when the
    /// client is kept after this call.
    ///
    /// ```no_run
    /// # #[rpc_core::service]
    /// # pub trait Prompt { async fn confirm(&self, question: String) -> bool; }
    /// # async fn handler() -> Result<bool, Box<dyn std::error::Error>> {
    /// let context = rpc_core::CallContext::current().ok_or(rpc_core::CallbackError::NotInCall)?;
    /// let gui: PromptClient = context.callbacks()?;
    /// Ok(gui.confirm("install?".into()).await?)
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallbackError::NoCallbacks`] if the connection has no callbacks,
    /// [`CallbackError::WrongService`] if they are not `C`'s service,
    /// [`CallbackError::Disconnected`] if the caller has gone.
    pub fn callbacks<C: Client>(&self) -> Result<C, CallbackError> {
        let link = self.link.as_ref().ok_or(CallbackError::NoCallbacks)?;
        let shared = link.upgrade().ok_or(CallbackError::Disconnected)?;
        let handle = ClientHandle::from_link(shared, self.deadline);
        let served = handle.service();
        if served.name != C::SERVICE.name || served.fingerprint() != C::SERVICE.fingerprint() {
            return Err(CallbackError::WrongService {
                requested: C::SERVICE.name,
                served: served.name,
            });
        }
        if handle.is_closed() {
            return Err(CallbackError::Disconnected);
        }
        Ok(C::from_handle(handle))
    }

    pub(crate) async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Runs `f` with this context as the current one.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::PeerInfo;

    #[test]
    fn peer_info_displays_what_is_known() {
        assert_eq!(
            PeerInfo::unix(Some(5969), Some(0)).to_string(),
            "pid 5969, uid 0"
        );
        assert_eq!(
            PeerInfo::windows(Some(5969), Some("S-1-5-21-1-2-3-1001".to_owned())).to_string(),
            "pid 5969, user S-1-5-21-1-2-3-1001"
        );
        assert_eq!(PeerInfo::unix(None, Some(1000)).to_string(), "uid 1000");
        assert_eq!(PeerInfo::windows(Some(7), None).to_string(), "pid 7");
        assert_eq!(PeerInfo::unknown().to_string(), "unknown peer");
        let all = PeerInfo {
            pid: Some(1),
            uid: Some(0),
            sid: Some("S-1-5-18".to_owned()),
        };
        assert_eq!(all.to_string(), "pid 1, uid 0, user S-1-5-18");
    }
}
