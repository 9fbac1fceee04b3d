//! A peer that speaks the protocol by hand, over a raw connection to a test server.

use bytes::Bytes;
use rpc_core::frame::{FrameRead, FrameReader, FrameWrite};
use rpc_core::protocol::{Header, MAGIC, PROTOCOL_VERSION};
use rpc_core::{Client, ServiceDescriptor};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

#[cfg(windows)]
use super::PATIENCE;
use super::{within, ProbeClient};

/// A whole frame (length prefix included): `header`, then `body` as it is.
pub fn frame(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut payload = postcard::to_stdvec(header).expect("encode");
    payload.extend_from_slice(body);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend(payload);
    frame
}

/// A correct hello for `service`, announcing frames of up to 1 MiB and the callback service
/// it declares, if any (as a client that serves them does).
pub fn hello(service: &ServiceDescriptor) -> Header {
    Header::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        service: service.name.to_owned(),
        fingerprint: service.fingerprint(),
        max_frame: 1 << 20,
        callbacks: service.callbacks.map_or(0, |c| c.fingerprint()),
    }
}

/// As a server that speaks by hand: reads the client's hello and welcomes it (this crate's
/// protocol version, the default maximum frame). Fails the test if the client is gone.
pub async fn welcome_client(reader: &mut impl FrameRead, writer: &mut impl FrameWrite) {
    use rpc_core::protocol::DEFAULT_MAX_FRAME;
    let _hello = reader.read_frame(DEFAULT_MAX_FRAME).await;
    let welcome = Header::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: DEFAULT_MAX_FRAME,
    };
    writer
        .write_frames(&[Bytes::from(frame(&welcome, &[]))])
        .await
        .expect("welcome");
}

/// Serves `service` with the default settings on one end of an in-memory pair, on a task of its
/// own; returns the other end, for a peer that speaks the protocol by hand, and that task.
pub fn serve_in_memory<D: rpc_core::Dispatch>(
    service: D,
) -> (
    (
        rpc_core::memory::MemoryReader,
        rpc_core::memory::MemoryWriter,
    ),
    tokio::task::JoinHandle<Result<(), rpc_core::ConnectionError>>,
) {
    let (ours, (reader, writer)) = rpc_core::memory::pair();
    let serving = tokio::spawn(async move {
        let config = rpc_core::ServerConfig::default();
        let shutdown = rpc_core::CancellationToken::new();
        rpc_core::serve_connection(
            reader,
            writer,
            rpc_core::PeerInfo::unknown(),
            service,
            &config,
            &shutdown,
        )
        .await
    });
    (ours, serving)
}

/// The frame of item `n` (a `u32`) of stream `stream`.
pub fn stream_item(stream: u64, n: u32) -> Vec<u8> {
    frame(
        &Header::StreamItem { stream },
        &postcard::to_stdvec(&n).expect("encode"),
    )
}

pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Opens a raw connection to a server's address.
#[cfg(unix)]
async fn raw_connect(address: &str) -> (BoxRead, BoxWrite) {
    let stream = tokio::net::UnixStream::connect(address)
        .await
        .expect("connect raw");
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

/// Opens a raw connection to a server's address, in message mode like the real client.
#[cfg(windows)]
async fn raw_connect(address: &str) -> (BoxRead, BoxWrite) {
    use tokio::net::windows::named_pipe::{ClientOptions, PipeMode};
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let pipe = loop {
        match ClientOptions::new()
            .pipe_mode(PipeMode::Message)
            .open(address)
        {
            Ok(pipe) => break pipe,
            // Every instance busy: the server is about to create the next one.
            Err(e) if e.raw_os_error() == Some(231) && tokio::time::Instant::now() < deadline => {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("connect raw: {e}"),
        }
    };
    let (read, write) = tokio::io::split(pipe);
    (Box::new(read), Box::new(write))
}

/// A peer that speaks the protocol by hand.
pub struct RawPeer {
    pub reader: FrameReader<BoxRead>,
    pub writer: BoxWrite,
}

impl RawPeer {
    pub async fn connect(address: &str) -> Self {
        let (read, writer) = raw_connect(address).await;
        Self::from_halves(read, writer)
    }

    /// A peer over a connection opened some other way.
    pub fn from_halves(read: BoxRead, writer: BoxWrite) -> Self {
        Self {
            reader: FrameReader::new(read),
            writer,
        }
    }

    /// Sends a correct hello for the Probe service.
    pub async fn send_hello(&mut self) {
        self.send_hello_for(<ProbeClient as Client>::SERVICE).await;
    }

    /// Sends a correct hello for `service`.
    pub async fn send_hello_for(&mut self, service: &ServiceDescriptor) {
        self.send_header(&hello(service)).await;
    }

    /// Connects and completes a correct handshake for the Probe service.
    pub async fn handshake(address: &str) -> Self {
        Self::handshake_for(address, <ProbeClient as Client>::SERVICE).await
    }

    /// Connects and completes a correct handshake for `service`.
    pub async fn handshake_for(address: &str, service: &ServiceDescriptor) -> Self {
        let mut peer = Self::connect(address).await;
        peer.send_hello_for(service).await;
        match peer.recv().await {
            Some((Header::Welcome { .. }, _)) => peer,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    pub async fn send_frame(&mut self, payload: &[u8]) {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.send_raw(&bytes).await.expect("send");
    }

    pub async fn send_header(&mut self, header: &Header) {
        self.send_frame(&postcard::to_stdvec(header).expect("encode"))
            .await;
    }

    /// The next frame, decoded; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<(Header, Bytes)> {
        let frame = within(
            "a frame from the server",
            self.reader
                .read_frame(rpc_core::protocol::DEFAULT_MAX_FRAME),
        )
        .await
        .ok()??;
        let (header, rest) = postcard::take_from_bytes::<Header>(&frame).expect("server header");
        let body = frame.slice(frame.len() - rest.len()..);
        Some((header, body))
    }

    /// A whole call frame (prefix included) to the Probe method named `method`.
    pub fn call_frame<A: Serialize>(id: u64, method: &str, args: &A) -> Vec<u8> {
        let service = <ProbeClient as Client>::SERVICE;
        let index = service
            .methods
            .iter()
            .find(|m| m.name == method)
            .map(|m| m.id)
            .expect("a Probe method");
        let mut payload = postcard::to_stdvec(&Header::Call {
            id,
            method: index,
            deadline_us: None,
        })
        .expect("encode");
        payload.extend(postcard::to_stdvec(args).expect("encode"));
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend(payload);
        frame
    }

    /// Whether the server closes the connection (or breaks it) within the patience, whatever it
    /// sends before; `false` if it keeps it open.
    pub async fn closes(&mut self) -> bool {
        let closed = async {
            while let Ok(Some(_)) = self
                .reader
                .read_frame(rpc_core::protocol::DEFAULT_MAX_FRAME)
                .await
            {}
        };
        tokio::time::timeout(crate::common::PATIENCE, closed)
            .await
            .is_ok()
    }

    /// Reads until the server closes the connection; returns the headers seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Header> {
        let mut seen = Vec::new();
        while let Some((header, _)) = self.recv().await {
            seen.push(header);
        }
        seen
    }
}
