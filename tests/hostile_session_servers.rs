//! Servers that answer a session's calls with replies of the wrong kind, or say they are
//! shutting down without their goodbye, while their connection stays open: each call fails at
//! once with the typed error, rather than waiting for a reconnection that never comes.

mod common;

#[path = "../examples/session_daemon/service.rs"]
#[allow(unreachable_pub, dead_code)]
mod service;

use std::time::Duration;

use bytes::Bytes;
use common::within;
use rpc_core::frame::{FrameRead, FrameWrite};
use rpc_core::protocol::{Header, ReplyStatus, WireError, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use rpc_core::session::{Connect, Session, SessionConfig};
use rpc_core::{ClientConfig, ClientHandle, ProtocolError, RpcError, ServiceDescriptor};
use service::SessionDaemonClient;

/// Connects to a server over memory that welcomes the client, then answers every call with
/// the status it holds: a typed application error, which no method of the daemon's interface
/// returns, or a failure that only a server shutting down sends, without its goodbye.
struct WrongKinds(ReplyStatus);

impl Connect for WrongKinds {
    type Error = RpcError;

    async fn connect(&self, service: &'static ServiceDescriptor) -> Result<ClientHandle, RpcError> {
        let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
        let status = self.0.clone();
        tokio::spawn(async move {
            let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
            let welcome = Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            };
            let welcome = Bytes::from(common::frame(&welcome, &[]));
            if writer.write_frames(&[welcome]).await.is_err() {
                return;
            }
            while let Ok(Some(frame)) = reader.read_frame(DEFAULT_MAX_FRAME).await {
                let Ok((Header::Call { id, .. }, _)) = postcard::take_from_bytes(&frame) else {
                    continue;
                };
                let reply = Header::Reply {
                    id,
                    status: status.clone(),
                };
                let reply = Bytes::from(common::frame(&reply, &[]));
                if writer.write_frames(&[reply]).await.is_err() {
                    return;
                }
            }
        });
        ClientHandle::connect(
            client_reader,
            client_writer,
            service,
            &ClientConfig::default(),
        )
        .await
    }

    fn is_permanent(&self, _: &RpcError) -> bool {
        false
    }
}

/// An idempotent call and a subscription, each answered with a reply of the wrong kind: both
/// fail with the protocol error well before their deadline (a minute), and the session stays
/// connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_the_wrong_kind_fail_a_sessions_calls_at_once() {
    let mut client = ClientConfig::new();
    client.default_timeout(Some(Duration::from_secs(60)));
    let (daemon, session): (SessionDaemonClient, Session) = Session::start(
        WrongKinds(ReplyStatus::AppError),
        &client,
        &SessionConfig::new(),
    );
    let status = within("the status", daemon.status()).await;
    assert!(
        matches!(
            status,
            Err(RpcError::Protocol(ProtocolError::UnexpectedKind(_)))
        ),
        "{status:?}"
    );
    let watch = within("the watch", daemon.watch(10)).await;
    assert!(
        matches!(
            watch,
            Err(RpcError::Protocol(ProtocolError::UnexpectedKind(_)))
        ),
        "{watch:?}"
    );
    assert!(session.state().is_connected());
}

/// An idempotent call and a subscription answered `ShuttingDown` or `Stopped` by a server that
/// sent no goodbye (and whose connection stays open): each fails at once with the server's
/// error, well before its deadline (a minute), instead of waiting for another connection that
/// the session, still connected, never makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_failures_without_a_goodbye_fail_a_sessions_calls_at_once() {
    for wire in [WireError::ShuttingDown, WireError::Stopped] {
        let mut client = ClientConfig::new();
        client.default_timeout(Some(Duration::from_secs(60)));
        let (daemon, session): (SessionDaemonClient, Session) = Session::start(
            WrongKinds(ReplyStatus::Failed(wire.clone())),
            &client,
            &SessionConfig::new(),
        );
        let status = within("the status", daemon.status()).await;
        assert!(
            matches!(&status, Err(RpcError::Remote(e)) if *e == wire),
            "{status:?}"
        );
        let watch = within("the watch", daemon.watch(10)).await;
        assert!(
            matches!(&watch, Err(RpcError::Remote(e)) if *e == wire),
            "{watch:?}"
        );
        assert!(session.state().is_connected());
    }
}

/// Connects to a server that opens every stream and ends it at once with `ShuttingDown`,
/// without its goodbye, and stays connected.
struct EndsWithoutGoodbye;

impl Connect for EndsWithoutGoodbye {
    type Error = RpcError;

    async fn connect(&self, service: &'static ServiceDescriptor) -> Result<ClientHandle, RpcError> {
        let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
        tokio::spawn(async move {
            let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
            let welcome = Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            };
            let welcome = Bytes::from(common::frame(&welcome, &[]));
            if writer.write_frames(&[welcome]).await.is_err() {
                return;
            }
            while let Ok(Some(frame)) = reader.read_frame(DEFAULT_MAX_FRAME).await {
                let Ok((Header::Call { id, .. }, _)) = postcard::take_from_bytes(&frame) else {
                    continue;
                };
                let reply = Header::Reply {
                    id,
                    status: ReplyStatus::Ok,
                };
                let end = Header::StreamEnd {
                    stream: id,
                    error: Some(WireError::ShuttingDown),
                };
                let frames = [
                    Bytes::from(common::frame(&reply, &[])),
                    Bytes::from(common::frame(&end, &[])),
                ];
                if writer.write_frames(&frames).await.is_err() {
                    return;
                }
            }
        });
        ClientHandle::connect(
            client_reader,
            client_writer,
            service,
            &ClientConfig::default(),
        )
        .await
    }

    fn is_permanent(&self, _: &RpcError) -> bool {
        false
    }
}

/// A subscription that such a server ends: the stream ends with the server's error, instead of
/// being reopened on the same connection (each reopening ended the same way, without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ended_as_shutting_down_without_a_goodbye_is_not_reopened() {
    use futures_util::StreamExt;
    let (daemon, session): (SessionDaemonClient, Session) = Session::start(
        EndsWithoutGoodbye,
        &ClientConfig::new(),
        &SessionConfig::new(),
    );
    let mut watch = within("the watch", daemon.watch(10)).await.expect("opened");
    let first = within("the stream's end", watch.next()).await;
    assert!(
        matches!(first, Some(Err(RpcError::Remote(WireError::ShuttingDown)))),
        "{first:?}"
    );
    let after = within("nothing after", watch.next()).await;
    assert!(after.is_none(), "{after:?}");
    assert!(session.state().is_connected());
}
