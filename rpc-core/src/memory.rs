//! An in-memory message transport, for tests and for running a service inside one process.
//!
//! Each direction is a bounded queue of whole frames, so it behaves like a message pipe: the
//! reader checks that each message is exactly one frame of at most the engine's maximum length.

use std::io;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::{connect, Client, ClientConfig};
use crate::context::PeerInfo;
use crate::error::RpcError;
use crate::frame::{check_len, FrameError, FrameRead, FrameWrite};
use crate::protocol::LEN_PREFIX;
use crate::server::{serve_connection, ServerConfig};
use crate::service::Dispatch;

/// Frames queued per direction before the writer waits.
const QUEUE: usize = 64;

/// How much of a message refused as too long is kept, for [`FrameRead::refused_frame_start`].
const REFUSED_KEPT: usize = 64;

/// The receiving end of one direction.
#[derive(Debug)]
pub struct MemoryReader {
    rx: mpsc::Receiver<Bytes>,
    /// The start of the last message refused as too long.
    refused: Bytes,
}

/// The sending end of one direction.
#[derive(Debug)]
pub struct MemoryWriter {
    tx: Option<mpsc::Sender<Bytes>>,
}

/// Creates one direction: what is written to the writer is read from the reader.
pub fn channel() -> (MemoryWriter, MemoryReader) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        MemoryWriter { tx: Some(tx) },
        MemoryReader {
            rx,
            refused: Bytes::new(),
        },
    )
}

/// Creates a connected pair of duplex ends, each a `(reader, writer)`.
pub fn pair() -> ((MemoryReader, MemoryWriter), (MemoryReader, MemoryWriter)) {
    let (a_writer, b_reader) = channel();
    let (b_writer, a_reader) = channel();
    ((a_reader, a_writer), (b_reader, b_writer))
}

impl FrameRead for MemoryReader {
    async fn read_frame(&mut self, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        let Some(mut message) = self.rx.recv().await else {
            return Ok(None);
        };
        let Some(prefix) = message.first_chunk::<LEN_PREFIX>() else {
            return Err(FrameError::Truncated {
                have: message.len(),
                need: LEN_PREFIX,
            });
        };
        let len = match check_len(*prefix, max_frame) {
            Ok(len) => len,
            Err(error) => {
                let kept = message.get(..REFUSED_KEPT).unwrap_or(&message[..]);
                self.refused = Bytes::copy_from_slice(kept);
                return Err(error);
            }
        };
        message.advance(LEN_PREFIX);
        if message.len() != len {
            return Err(FrameError::BoundaryMismatch);
        }
        Ok(Some(message))
    }

    fn refused_frame_start(&self) -> &[u8] {
        &self.refused
    }
}

impl FrameWrite for MemoryWriter {
    async fn write_frames(&mut self, frames: &[Bytes]) -> Result<(), FrameError> {
        let tx = self.tx.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        for frame in frames {
            tx.send(frame.clone())
                .await
                .map_err(|_| io::ErrorKind::BrokenPipe)?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FrameError> {
        self.tx = None;
        Ok(())
    }
}

/// Serves `service` on a new in-memory connection and returns a client connected to it.
///
/// The server side runs on a spawned task and ends when the client is dropped.
///
/// # Errors
///
/// The handshake's [`RpcError`], if the client type does not match the service.
pub async fn serve_and_connect<D: Dispatch, C: Client>(service: D) -> Result<C, RpcError> {
    serve_and_connect_with(service, &ServerConfig::default(), &ClientConfig::default()).await
}

/// As [`serve_and_connect`], with the server's and the client's settings (for instance the
/// callbacks the client serves, [`ClientConfig::serve_callbacks`]).
///
/// # Errors
///
/// As [`serve_and_connect`].
pub async fn serve_and_connect_with<D: Dispatch, C: Client>(
    service: D,
    server: &ServerConfig,
    client: &ClientConfig,
) -> Result<C, RpcError> {
    let ((server_reader, server_writer), (client_reader, client_writer)) = pair();
    let config = server.clone();
    tokio::spawn(async move {
        let result = serve_connection(
            server_reader,
            server_writer,
            PeerInfo::unknown(),
            service,
            &config,
            &CancellationToken::new(),
        )
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "in-memory connection ended");
        }
    });
    connect(client_reader, client_writer, client).await
}
