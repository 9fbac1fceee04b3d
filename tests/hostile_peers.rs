//! Peers that break the protocol cost their own connection, never the server.
mod common;

use std::time::Duration;

use common::{within, Event, ProbeClient, RawPeer, TestServer};
use rpc_core::protocol::{
    GoodbyeReason, Header, Rejection, ReplyStatus, WireDecodeError, WireError, MAGIC,
};
use rpc_core::ClientConfig;
use rpc_core::{Client, RpcError, ServerConfig};
use rpc_transport::ConnectError;
#[cfg(unix)]
use tokio::io::AsyncWriteExt;

/// The same service name with another interface.
#[rpc_core::service(name = "Probe")]
pub trait ProbeV2 {
    /// Adds, with other argument types.
    async fn add(&self, a: i32, b: i32) -> i32;
    /// As the server has it.
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// A method the server does not have.
    async fn subtract(&self, a: i64, b: i64) -> i64;
}

/// A service the server does not serve.
#[rpc_core::service]
pub trait Elsewhere {
    /// Does nothing.
    async fn ping(&self);
}

fn method_id(name: &str) -> u32 {
    <ProbeClient as Client>::SERVICE
        .methods
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .expect("method exists")
}

/// A client of another version of the interface connects; its methods bind one by one: the
/// same one works, a changed one and a missing one fail at once with typed errors, and the
/// connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_interface_binds_method_by_method() {
    let server = TestServer::start();
    let client =
        rpc_transport::connect_with::<ProbeV2Client>(&server.endpoint, &ClientConfig::default())
            .await
            .expect("connect");
    assert_eq!(client.echo(vec![1, 2]).await.expect("echo"), [1, 2]);
    let changed = client.add(1, 2).await;
    assert!(
        matches!(
            changed,
            Err(RpcError::Incompatible {
                method: "add",
                arguments: true,
                result: true
            })
        ),
        "{changed:?}"
    );
    let missing = client.subtract(3, 1).await;
    assert!(
        matches!(missing, Err(RpcError::UnknownMethod { method: "subtract" })),
        "{missing:?}"
    );
    let handle = client.handle();
    assert!(handle.supports("echo"));
    assert!(!handle.supports("add"));
    assert_eq!(
        handle.binding("subtract"),
        Some(rpc_core::MethodBinding::Missing)
    );
    assert_eq!(client.echo(vec![3]).await.expect("echo"), [3]);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_rejected_at_connect() {
    let server = TestServer::start();
    let result =
        rpc_transport::connect_with::<ElsewhereClient>(&server.endpoint, &ClientConfig::default())
            .await;
    match result {
        Err(ConnectError::Handshake(RpcError::Rejected(Rejection::UnknownService {
            requested,
            served,
        }))) => {
            assert_eq!(requested, "Elsewhere");
            assert_eq!(served, "Probe");
        }
        other => panic!("expected an unknown service, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_versions_are_rejected() {
    let server = TestServer::start();
    let mut peer = RawPeer::connect(&server.address).await;
    let service = <ProbeClient as Client>::SERVICE;
    peer.send_header(&Header::Hello {
        magic: MAGIC,
        version: 99,
        service: service.name.into(),
        fingerprint: service.fingerprint(),
        max_frame: 1024,
        callbacks: 0,
    })
    .await;
    let seen = peer.until_closed().await;
    assert_eq!(
        seen,
        vec![Header::Reject(Rejection::UnsupportedVersion {
            client: 99,
            server: rpc_core::protocol::PROTOCOL_VERSION
        })]
    );
}

/// A hello of another protocol version whose fields after the version are laid out otherwise
/// (this version cannot decode it) is still answered with the version this server speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_versions_are_rejected_whatever_follows_the_version() {
    let server = TestServer::start();
    let mut peer = RawPeer::connect(&server.address).await;
    // Kind 0 (hello), the magic, version 200 (a two-byte varint), then bytes that are no
    // service name (a length far past the frame).
    let mut hello = vec![0];
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&[0xc8, 0x01, 0xff, 0xff, 0x7f]);
    peer.send_frame(&hello).await;
    let seen = peer.until_closed().await;
    assert_eq!(
        seen,
        vec![Header::Reject(Rejection::UnsupportedVersion {
            client: 200,
            server: rpc_core::protocol::PROTOCOL_VERSION
        })]
    );
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_is_closed_without_an_answer() {
    let server = TestServer::start();
    let mut peer = RawPeer::connect(&server.address).await;
    peer.send_header(&Header::Hello {
        magic: *b"HTTP",
        version: 1,
        service: "Probe".into(),
        fingerprint: 0,
        max_frame: 1024,
        callbacks: 0,
    })
    .await;
    assert_eq!(peer.until_closed().await, vec![]);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_the_maximum_closes_only_that_connection() {
    let max = 64 * 1024;
    let server = TestServer::start_with(ServerConfig::new().max_frame(max));
    let bystander = server.client().await;
    let mut peer = RawPeer::handshake(&server.address).await;
    // Only the length prefix is sent: the server must refuse it from the prefix alone.
    peer.send_raw(&(max + 1).to_le_bytes()).await.expect("send");
    assert_eq!(
        peer.until_closed().await,
        vec![Header::Goodbye {
            reason: GoodbyeReason::FrameTooLarge { len: max + 1, max }
        }]
    );
    assert_eq!(bystander.add(1, 2).await.expect("bystander served"), 3);
    server.assert_serving().await;
}

/// Before the handshake, the peer is nobody yet: a hello longer than 64 KiB is refused from its
/// length prefix, whatever the server's maximum frame, and the connection closed at once (not
/// after the handshake or frame timeout, here longer than the test waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_over_64_kib_is_refused_from_its_prefix() {
    let server = TestServer::start_with(
        ServerConfig::new()
            .max_frame(16 << 20)
            .handshake_timeout(Duration::from_secs(600))
            .frame_timeout(Duration::from_secs(600)),
    );
    let mut peer = RawPeer::connect(&server.address).await;
    peer.send_raw(&(64 * 1024 + 1u32).to_le_bytes())
        .await
        .expect("send");
    assert!(peer.closes().await, "the server waited for the hello");
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_to_send_a_request_over_the_servers_maximum() {
    let server = TestServer::start_with(ServerConfig::new().max_frame(1024));
    let client = server.client().await;
    let result = client.echo(vec![0; 2048]).await;
    assert!(
        matches!(result, Err(RpcError::RequestTooLarge { max: 1024, .. })),
        "{result:?}"
    );
    assert_eq!(
        client.echo(vec![1; 100]).await.expect("small echo"),
        vec![1; 100]
    );
}

/// A small deterministic generator, so failures reproduce.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_closes_the_connection() {
    let server = TestServer::start();
    let bystander = server.client().await;
    for seed in 1..=20u64 {
        // Before the handshake...
        let mut peer = RawPeer::connect(&server.address).await;
        let _ = peer.send_raw(&garbage(seed, 4096)).await;
        peer.until_closed().await;
        // ...and after it.
        let mut peer = RawPeer::handshake(&server.address).await;
        let _ = peer.send_raw(&garbage(seed + 1000, 4096)).await;
        peer.until_closed().await;
    }
    // Garbage inside a well-formed frame, after the handshake: a bad header.
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_frame(&[0xff; 32]).await;
    assert_eq!(
        peer.until_closed().await,
        vec![Header::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        }]
    );
    assert_eq!(bystander.add(20, 22).await.expect("bystander served"), 42);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_closes_the_connection() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[3; 10]);
    peer.send_raw(&bytes).await.expect("send");
    // The peer goes away in the middle of the frame.
    #[cfg(unix)]
    {
        // A socket can half-close: the server sees the end of the stream and closes its side.
        peer.writer.shutdown().await.expect("half-close");
        assert_eq!(peer.until_closed().await, vec![]);
    }
    // A pipe cannot half-close: the peer closes the whole connection.
    drop(peer);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_nested_100_000_deep_are_an_error_and_the_server_lives() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let mut call = postcard::to_stdvec(&Header::Call {
        id: 1,
        method: method_id("depth"),
        deadline_us: None,
    })
    .expect("encode");
    call.extend(std::iter::repeat_n(1u8, 100_000)); // Nested::Node, 100,000 times
    call.push(0); // Nested::Leaf
    peer.send_frame(&call).await;
    match peer.recv().await {
        Some((Header::Reply { id: 1, status }, _)) => assert_eq!(
            status,
            ReplyStatus::Failed(WireError::BadArguments(WireDecodeError::TooDeep))
        ),
        other => panic!("expected a failed reply, got {other:?}"),
    }
    // A value within the limit still works, on the same connection and on others.
    let mut ok = postcard::to_stdvec(&Header::Call {
        id: 2,
        method: method_id("depth"),
        deadline_us: None,
    })
    .expect("encode");
    ok.extend([1, 1, 1, 0]);
    peer.send_frame(&ok).await;
    match peer.recv().await {
        Some((
            Header::Reply {
                id: 2,
                status: ReplyStatus::Ok,
            },
            body,
        )) => {
            assert_eq!(postcard::from_bytes::<u32>(&body).expect("u32"), 3);
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_the_handler_at_the_deadline_it_received() {
    // This peer has no timer of its own and never cancels: the server enforces the deadline.
    let mut server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let mut call = postcard::to_stdvec(&Header::Call {
        id: 5,
        method: method_id("sleep"),
        deadline_us: Some(200_000),
    })
    .expect("encode");
    call.extend(postcard::to_stdvec(&(21u32, 60_000u64)).expect("args"));
    peer.send_frame(&call).await;
    match peer.recv().await {
        Some((Header::Reply { id: 5, status }, _)) => {
            assert_eq!(status, ReplyStatus::Failed(WireError::DeadlineExceeded));
        }
        other => panic!("expected a deadline reply, got {other:?}"),
    }
    server.expect_event(&Event::SleepDropped(21)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_and_bad_arguments_fail_only_the_call() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let call = postcard::to_stdvec(&Header::Call {
        id: 1,
        method: 999,
        deadline_us: None,
    })
    .expect("encode");
    peer.send_frame(&call).await;
    assert_eq!(
        peer.recv().await.map(|(h, _)| h),
        Some(Header::Reply {
            id: 1,
            status: ReplyStatus::Failed(WireError::UnknownMethod(999))
        })
    );
    let mut call = postcard::to_stdvec(&Header::Call {
        id: 2,
        method: method_id("add"),
        deadline_us: None,
    })
    .expect("encode");
    call.extend([2, 4, 6]); // one byte too many
    peer.send_frame(&call).await;
    assert_eq!(
        peer.recv().await.map(|(h, _)| h),
        Some(Header::Reply {
            id: 2,
            status: ReplyStatus::Failed(WireError::BadArguments(WireDecodeError::TrailingBytes))
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_after_the_handshake_timeout() {
    let server =
        TestServer::start_with(ServerConfig::new().handshake_timeout(Duration::from_millis(200)));
    let mut peer = RawPeer::connect(&server.address).await;
    within("server to drop the silent peer", peer.until_closed()).await;
    server.assert_serving().await;
}
