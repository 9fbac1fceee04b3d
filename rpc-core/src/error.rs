//! The framework's error type.

use crate::decode::DecodeError;
use crate::frame::FrameError;
use crate::protocol::{GoodbyeReason, Rejection, WireError};

/// Which side of a method differs, for [`RpcError::Incompatible`].
fn differs(arguments: bool, result: bool) -> &'static str {
    match (arguments, result) {
        (true, true) => "arguments and result",
        (true, false) => "arguments",
        _ => "result",
    }
}

/// Why a call or a connection failed. One variant per cause; application errors of
/// `Result<T, E>` methods are not here, they reach the caller as `E`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The server refused the handshake: another protocol version, another service, or other
    /// callbacks than it calls. (Another version of the same service is welcomed: its methods
    /// bind one by one.)
    #[error("handshake rejected")]
    Rejected(#[source] Rejection),
    /// The peer did not complete the handshake in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The server's welcome (its answer to the hello, which lists its methods when its
    /// interface differs from the client's) is longer than this client's maximum frame
    /// ([`ClientConfig::max_frame`](crate::ClientConfig::max_frame)); a larger maximum lets
    /// this client connect.
    #[error("the server's welcome of {len} bytes is larger than this client's max_frame of {max}")]
    WelcomeTooLarge {
        /// The welcome's frame length.
        len: u32,
        /// This client's maximum frame.
        max: u32,
    },
    /// The server does not have this method (it runs an older version of the interface);
    /// nothing was sent and the connection goes on.
    #[error("the server has no method `{method}`")]
    UnknownMethod {
        /// The method.
        method: &'static str,
    },
    /// The server's method of this name takes or returns other shapes than this client's
    /// (another version of its types); nothing was sent and the connection goes on.
    #[error("method `{method}` differs on the server ({})", differs(*arguments, *result))]
    Incompatible {
        /// The method.
        method: &'static str,
        /// Its arguments differ.
        arguments: bool,
        /// Its result or error differs.
        result: bool,
    },
    /// The callbacks this client serves are not the ones the service declares
    /// (`#[service(callbacks = Trait)]`): none where the service calls back, another service,
    /// or some where it does not. Nothing was sent.
    #[error("service {service:?} calls back {declared:?}, but the client serves {served:?}")]
    CallbacksMismatch {
        /// The service being connected.
        service: &'static str,
        /// The callback service it declares.
        declared: Option<&'static str>,
        /// The callback service the client's configuration serves.
        served: Option<&'static str>,
    },
    /// The call's deadline passed before its reply arrived, by the client's clock or the
    /// server's; the handler on the server was stopped.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The connection is closed (the peer went away, or it was closed after an error); calls in
    /// flight and new calls fail with this.
    #[error("connection closed")]
    ConnectionClosed,
    /// The server is shutting down and takes no new calls on this connection.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The peer closed the connection and said why: a server shutting down (also to a client
    /// still in its handshake, which its connect returns), or something this side sent.
    #[error("peer closed the connection")]
    ClosedByPeer(#[source] GoodbyeReason),
    /// The process serving the connection (a child process over its stdio) exited; calls in
    /// flight fail with this as soon as the exit is seen. Carries the exit status.
    #[error("peer process exited ({0})")]
    PeerExited(std::process::ExitStatus),
    /// The transport failed (reading or writing), or a frame from the peer was bad (too long,
    /// truncated); the connection is closed.
    #[error("transport failed")]
    Frame(#[source] FrameError),
    /// The peer sent a message that breaks the protocol; the connection is closed.
    #[error("protocol violation")]
    Protocol(#[source] ProtocolError),
    /// The arguments could not be encoded.
    #[error("arguments could not be encoded")]
    Encode(#[source] postcard::Error),
    /// The call's encoded frame is larger than the server accepts; nothing was sent.
    #[error("request of {len} bytes exceeds the peer's maximum frame of {max}")]
    RequestTooLarge {
        /// The frame length.
        len: u64,
        /// The peer's maximum.
        max: u32,
    },
    /// The reply did not decode as the method's result type.
    #[error("reply did not decode")]
    Decode(#[source] DecodeError),
    /// A blocking client's background runtime could not start, or the call's task was lost
    /// (see [`crate::blocking`]).
    #[error("the background runtime of blocking clients is not available")]
    NoRuntime,
    /// A blocking call made on the background runtime's own thread (in a callback or a task of
    /// a blocking client's connection): it would wait for that thread, which runs it, forever.
    /// Use the async client there ([`crate::blocking::BlockingClient::as_async`]).
    #[error("a blocking call on the thread that runs blocking calls would wait for itself")]
    BlockingOnItsRuntime,
    /// The server could not run the call, or could not send its result.
    #[error("server failed the call")]
    Remote(#[source] WireError),
    /// A call made through a session was on a connection that was lost before its reply
    /// came (see [`crate::session`]). `may_have_run` says whether the server may have run it:
    /// `false` only when the server said it did not.
    #[error("the connection was lost during the call ({})", if *may_have_run { "it may have run on the server" } else { "it did not run" })]
    ConnectionLost {
        /// Whether the server may have run the call.
        may_have_run: bool,
        /// How the connection was lost.
        #[source]
        cause: Box<RpcError>,
    },
    /// A call made through a session found no connection before its deadline passed; it was
    /// not sent. Carries the last connect error, if there was one.
    #[error("no connection to the server before the call's deadline (the call was not sent)")]
    Disconnected(#[source] Option<SessionError>),
    /// A call made through a session, or a stream reopened by one, found it failed for a reason
    /// that retrying cannot fix (a server of another interface); nothing was sent.
    #[error("the session has failed")]
    SessionFailed(#[source] SessionError),
    /// Not an end: a stream opened through a session was reopened on a new connection, with
    /// the same arguments, after the old one was lost. Items sent meanwhile were missed; the
    /// items that follow come from the reopened stream.
    #[error("the stream was reopened after a reconnect; items may have been missed")]
    StreamReopened,
}

/// A connect error of a session, shared: the transport's own error (for names and sockets,
/// `rpc_transport::ConnectError`), which [`std::error::Error::source`] and
/// [`SessionError::downcast_ref`] reach.
#[derive(Debug, Clone)]
pub struct SessionError(pub(crate) std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl SessionError {
    pub(crate) fn new<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self(std::sync::Arc::new(error))
    }

    /// The transport's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<FrameError> for RpcError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::PeerExited(status) => RpcError::PeerExited(status),
            other => RpcError::Frame(other),
        }
    }
}

impl From<ProtocolError> for RpcError {
    fn from(error: ProtocolError) -> Self {
        RpcError::Protocol(error)
    }
}

/// A message from the peer that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame's header did not decode.
    #[error("frame header did not decode")]
    BadHeader,
    /// The first frame of the connection was not a hello (server) or a welcome (client).
    #[error("expected a handshake message")]
    ExpectedHandshake,
    /// The hello did not start with the protocol's magic bytes: not a client of this protocol.
    #[error("peer does not speak this protocol (bad magic)")]
    BadMagic,
    /// A message kind that this side does not accept here.
    #[error("unexpected message kind {0}")]
    UnexpectedKind(&'static str),
    /// A call reused a request id that is still in flight.
    #[error("request id {0} is already in flight")]
    DuplicateId(u64),
    /// The peer replied to a request id this side never sent a call with.
    #[error("reply to request id {id}, which was never sent")]
    UnknownReply {
        /// The request id.
        id: u64,
    },
    /// The first bytes from the server were not a frame of this protocol: the peer is some other
    /// program (or a child process printed to its stdout). `received` shows the start of what
    /// arrived, escaped.
    #[error("peer does not speak this protocol; it sent {received}")]
    NotThisProtocol {
        /// The first bytes received, escaped for display.
        received: String,
    },
    /// The welcome named a protocol version this side does not speak.
    #[error("server answered with protocol version {0}")]
    BadVersion(u16),
    /// The peer started a stream item with none of the credit granted to it left.
    #[error("stream {stream}: item sent beyond the credit granted")]
    CreditExceeded {
        /// The stream.
        stream: u64,
    },
    /// The server's welcome did not list its methods readably.
    #[error("the welcome's method table did not decode")]
    BadWelcome,
    /// The peer sent an item or the end of a stream that is not open: never opened, or
    /// already ended.
    #[error("stream {stream} is not open")]
    UnknownStream {
        /// The stream.
        stream: u64,
    },
    /// The peer granted stream credit beyond what can be counted.
    #[error("stream {stream}: credit overflow")]
    CreditOverflow {
        /// The stream.
        stream: u64,
    },
    /// The peer sent a stream item in parts that together are longer than this side's maximum
    /// frame.
    #[error("stream {stream}: an item in parts longer than the maximum frame of {max} bytes")]
    ItemTooLarge {
        /// The stream.
        stream: u64,
        /// This side's maximum frame.
        max: u32,
    },
    /// The peer ended a stream in the middle of an item it was sending in parts.
    #[error("stream {stream} ended in the middle of an item")]
    EndInsideItem {
        /// The stream.
        stream: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WireDecodeError;

    /// The message of an error and of each of its sources, as a chain printer shows them.
    fn chain(error: &dyn std::error::Error) -> Vec<String> {
        let mut lines = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            lines.push(cause.to_string());
            source = cause.source();
        }
        lines
    }

    /// Each cause is printed once: an error that carries a source does not repeat it in its
    /// own message.
    #[test]
    fn each_cause_is_printed_once() {
        let errors = [
            RpcError::Rejected(Rejection::FingerprintMismatch {
                service: "Calculator".into(),
                client: 1,
                server: 2,
            }),
            RpcError::ClosedByPeer(GoodbyeReason::ProtocolViolation),
            RpcError::Frame(FrameError::TooLarge { len: 9, max: 8 }),
            RpcError::Protocol(ProtocolError::DuplicateId(3)),
            RpcError::Remote(WireError::BadArguments(WireDecodeError::TooDeep)),
            RpcError::Decode(DecodeError::TooDeep { max_depth: 4 }),
        ];
        for error in &errors {
            let lines = chain(error);
            assert!(lines.len() >= 2, "{lines:?} has no cause");
            for (i, line) in lines.iter().enumerate() {
                for later in &lines[i + 1..] {
                    assert!(
                        !line.contains(later.as_str()),
                        "{line:?} repeats its cause {later:?}"
                    );
                }
            }
        }
        assert_eq!(
            chain(&errors[0]),
            [
                "handshake rejected",
                "interface of \"Calculator\" differs: client fingerprint 0x0000000000000001, \
                 server 0x0000000000000002"
            ]
        );
    }
}
