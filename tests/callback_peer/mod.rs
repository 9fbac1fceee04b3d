//! What the tests of a client that serves callbacks against a server that speaks by hand
//! share: the two services, the hand-speaking server, and frames for it.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use rpc_core::frame::{FrameRead, FrameWrite};
use rpc_core::memory::{MemoryReader, MemoryWriter};
use rpc_core::protocol::{Header, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use rpc_core::ClientConfig;

use crate::common::{self, within};

/// What the client serves back.
#[rpc_core::service]
pub trait Echo {
    /// Answers `n`.
    async fn echo(&self, n: u32) -> u32;
}

/// The service the client calls.
#[rpc_core::service(callbacks = Echo)]
pub trait Hub {
    /// Never answered by the hostile server.
    async fn ping(&self) -> u32;
    /// Takes its argument's size.
    async fn store(&self, data: rpc_core::ByteBuf) -> u32;
}

pub struct Echoes;

impl Echo for Echoes {
    async fn echo(&self, n: u32) -> u32 {
        n
    }
}

/// A whole frame, as the memory transport takes it.
pub fn frame(header: &Header, body: &[u8]) -> Bytes {
    Bytes::from(common::frame(header, body))
}

/// A server that welcomes the client, then does what the test says.
pub struct Hostile {
    pub reader: MemoryReader,
    pub writer: MemoryWriter,
}

impl Hostile {
    pub async fn send(&mut self, frames: &[Bytes]) {
        self.writer.write_frames(frames).await.expect("send");
    }

    /// The next frame from the client that is not a call of its own.
    pub async fn reply(&mut self) -> (Header, Bytes) {
        loop {
            let frame = within(
                "a frame from the client",
                self.reader.read_frame(DEFAULT_MAX_FRAME),
            )
            .await
            .expect("read")
            .expect("a frame");
            let (header, body) = postcard::take_from_bytes::<Header>(&frame).expect("header");
            if !matches!(header, Header::Call { .. }) {
                return (header, Bytes::copy_from_slice(body));
            }
        }
    }
}

pub async fn connect() -> (HubClient, Hostile) {
    let ((mut reader, mut writer), (client_reader, client_writer)) = rpc_core::memory::pair();
    let mut config = ClientConfig::new();
    config
        .serve_callbacks(EchoServer::new(Echoes))
        .max_frame(4096);
    let server = tokio::spawn(async move {
        let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
        let welcome = Header::Welcome {
            version: PROTOCOL_VERSION,
            max_frame: DEFAULT_MAX_FRAME,
        };
        writer
            .write_frames(&[frame(&welcome, &[])])
            .await
            .expect("welcome");
        Hostile { reader, writer }
    });
    let client = rpc_core::connect(client_reader, client_writer, &config)
        .await
        .expect("connect");
    (client, server.await.expect("join"))
}

/// The id of `Echo::echo`.
pub fn echo() -> u32 {
    <EchoClient as rpc_core::Client>::SERVICE
        .method_named("echo")
        .map(|m| m.id)
        .expect("echo")
}

pub fn call(id: u64, method: u32) -> Header {
    Header::Call {
        id,
        method,
        deadline_us: None,
    }
}

/// A call to `Echo::echo` with request id `id`.
pub fn call_frame(id: u64) -> Header {
    call(id, echo())
}
