//! Servers whose first answer a client cannot take: connecting fails with an error that says
//! why. A welcome longer than the client's maximum frame is that, not another protocol.

mod common;

use bytes::Bytes;
use common::{frame, within, ProbeClient};
use rpc_core::frame::{FrameRead, FrameReader, FrameWrite, FrameWriter};
use rpc_core::protocol::{Header, MethodEntry, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use rpc_core::{ClientConfig, ProtocolError, RpcError};

/// The client's maximum frame in these tests.
const MAX: u32 = 1024;

/// A client's settings: frames of at most [`MAX`] bytes.
fn small_frames() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.max_frame(MAX);
    config
}

/// The welcome of a server of another interface with 200 methods: far over [`MAX`].
fn large_welcome() -> Vec<u8> {
    let table: Option<Vec<MethodEntry>> = Some(
        (0..200)
            .map(|id| MethodEntry {
                id,
                args: u64::MAX - u64::from(id),
                result: u64::from(id) << 40,
            })
            .collect(),
    );
    let welcome = Header::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: DEFAULT_MAX_FRAME,
    };
    frame(&welcome, &postcard::to_stdvec(&table).expect("encode"))
}

/// Reads the hello, answers `answer`, then reads until the client leaves.
async fn answer<R: FrameRead, W: FrameWrite>(mut reader: R, mut writer: W, answer: Vec<u8>) {
    let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
    writer
        .write_frames(&[Bytes::from(answer)])
        .await
        .expect("answer");
    while let Ok(Some(_)) = reader.read_frame(DEFAULT_MAX_FRAME).await {}
}

/// Connects a client with frames of at most [`MAX`] bytes to a raw server that answers the
/// hello with `answer`, over a byte stream.
async fn connect_over_bytes(answer_bytes: Vec<u8>) -> Result<ProbeClient, RpcError> {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let (client_read, client_write) = tokio::io::split(client_end);
    let server = tokio::spawn(answer(
        FrameReader::new(server_read),
        FrameWriter::new(server_write),
        answer_bytes,
    ));
    let settings = small_frames();
    let connecting = rpc_core::connect(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
        &settings,
    );
    let result = within("the handshake to fail", connecting).await;
    server.abort();
    result
}

/// Checks that `result` is the welcome too large for [`MAX`], and says so.
fn assert_welcome_too_large(result: Result<ProbeClient, RpcError>) {
    let expected = u32::try_from(large_welcome().len() - 4).expect("length");
    match result {
        Err(error @ RpcError::WelcomeTooLarge { len, max: MAX }) if len == expected => {
            let message = error.to_string();
            assert!(
                message.contains("welcome") && message.contains("max_frame"),
                "{message}"
            );
        }
        Err(other) => panic!("expected the welcome too large, got {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_over_the_clients_max_frame_says_so() {
    assert_welcome_too_large(connect_over_bytes(large_welcome()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_over_the_clients_max_frame_says_so_in_memory() {
    let ((reader, writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let server = tokio::spawn(answer(reader, writer, large_welcome()));
    let settings = small_frames();
    let connecting = rpc_core::connect(client_reader, client_writer, &settings);
    assert_welcome_too_large(within("the handshake to fail", connecting).await);
    server.abort();
}

/// Over a Unix socket at a named endpoint, through the transport's reader.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_over_the_clients_max_frame_says_so_over_a_socket() {
    use rpc_transport::unix::EndpointExt;
    let dir = common::private_dir();
    let endpoint = rpc_transport::Endpoint::new("welcome")
        .expect("name")
        .in_dir(dir.path());
    let listener =
        tokio::net::UnixListener::bind(dir.path().join("welcome.sock")).expect("bind raw");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, write) = stream.into_split();
        answer(
            FrameReader::new(read),
            FrameWriter::new(write),
            large_welcome(),
        )
        .await;
    });
    let settings = small_frames();
    let connecting = rpc_transport::connect_with::<ProbeClient>(&endpoint, &settings);
    match within("the handshake to fail", connecting).await {
        Err(rpc_transport::ConnectError::Handshake(error)) => assert_welcome_too_large(Err(error)),
        other => panic!("expected a handshake error, got {:?}", other.map(|_| ())),
    }
    server.abort();
}

/// A peer that answers with text still does not speak the protocol, though its first bytes
/// read as a length over the maximum too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_still_not_this_protocol() {
    let result = connect_over_bytes(b"this program speaks another protocol\n".to_vec()).await;
    match result {
        Err(RpcError::Protocol(ProtocolError::NotThisProtocol { received })) => {
            assert!(received.contains("this program"), "{received}");
        }
        other => panic!("expected not this protocol, got {:?}", other.map(|_| ())),
    }
}
