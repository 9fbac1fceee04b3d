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
use rpc_core::protocol::{Header, ReplyStatus, WireError, DEFAULT_MAX_FRAME};
use rpc_core::session::{Connect, Session, SessionConfig};
use rpc_core::{ClientConfig, ClientHandle, ProtocolError, RpcError, ServiceDescriptor};
use service::SessionDaemonClient;

/// Connects to a server over memory that welcomes the client, then answers every call with the
/// frames its [`Answer`] gives for the call's id, and never says goodbye.
struct Scripted(Answer);

/// The frames a scripted server answers a call with, given its id.
type Answer = fn(u64) -> Vec<Header>;

/// Every call answered with a typed application error, which no method of the daemon's
/// interface returns.
fn app_error(id: u64) -> Vec<Header> {
    reply(id, ReplyStatus::AppError)
}

/// Every call answered `ShuttingDown`, which only a server shutting down sends.
fn shutting_down(id: u64) -> Vec<Header> {
    reply(id, ReplyStatus::Failed(WireError::ShuttingDown))
}

/// Every call answered `Stopped`, which only a server shutting down sends.
fn stopped(id: u64) -> Vec<Header> {
    reply(id, ReplyStatus::Failed(WireError::Stopped))
}

/// Every stream opened, then ended at once with `ShuttingDown`.
fn opened_and_ended(id: u64) -> Vec<Header> {
    let mut frames = reply(id, ReplyStatus::Ok);
    frames.push(Header::StreamEnd {
        stream: id,
        error: Some(WireError::ShuttingDown),
    });
    frames
}

fn reply(id: u64, status: ReplyStatus) -> Vec<Header> {
    vec![Header::Reply { id, status }]
}

impl Connect for Scripted {
    type Error = RpcError;

    async fn connect(&self, service: &'static ServiceDescriptor) -> Result<ClientHandle, RpcError> {
        let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
        let answer = self.0;
        tokio::spawn(async move {
            common::welcome_client(&mut reader, &mut writer).await;
            while let Ok(Some(frame)) = reader.read_frame(DEFAULT_MAX_FRAME).await {
                let Ok((Header::Call { id, .. }, _)) = postcard::take_from_bytes(&frame) else {
                    continue;
                };
                let frames: Vec<Bytes> = answer(id)
                    .iter()
                    .map(|header| Bytes::from(common::frame(header, &[])))
                    .collect();
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

/// An idempotent call and a subscription, each answered with a reply of the wrong kind: both
/// fail with the protocol error well before their deadline (a minute), and the session stays
/// connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_the_wrong_kind_fail_a_sessions_calls_at_once() {
    let mut client = ClientConfig::new();
    client.default_timeout(Some(Duration::from_secs(60)));
    let (daemon, session): (SessionDaemonClient, Session) =
        Session::start(Scripted(app_error), &client, &SessionConfig::new());
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
    let answers: [(Answer, WireError); 2] = [
        (shutting_down, WireError::ShuttingDown),
        (stopped, WireError::Stopped),
    ];
    for (answer, wire) in answers {
        let mut client = ClientConfig::new();
        client.default_timeout(Some(Duration::from_secs(60)));
        let (daemon, session): (SessionDaemonClient, Session) =
            Session::start(Scripted(answer), &client, &SessionConfig::new());
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

/// A subscription that such a server ends: the stream ends with the server's error, instead of
/// being reopened on the same connection (each reopening ended the same way, without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ended_as_shutting_down_without_a_goodbye_is_not_reopened() {
    use futures_util::StreamExt;
    let (daemon, session): (SessionDaemonClient, Session) = Session::start(
        Scripted(opened_and_ended),
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
