//! An in-memory message transport, for tests and for running a service inside one process.
//!
//! Each direction is a bounded queue of whole frames, so it behaves like a message pipe: the
//! reader checks that each message is exactly one frame of at most the maximum length.

use std::io;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::client::{Client, ClientConfig, ClientHandle};
use crate::context::PeerInfo;
use crate::error::RpcError;
use crate::frame::{FrameError, FrameRead, FrameWrite};
use crate::protocol::{DEFAULT_MAX_FRAME, LEN_PREFIX};
use crate::server::{serve_connection, ServerConfig, Shutdown};
use crate::service::Dispatch;

/// Frames queued per direction before the writer waits.
const QUEUE: usize = 64;

/// The receiving end of one direction.
#[derive(Debug)]
pub struct MemoryReader {
    rx: mpsc::Receiver<Bytes>,
    max_frame: u32,
}

/// The sending end of one direction.
#[derive(Debug)]
pub struct MemoryWriter {
    tx: Option<mpsc::Sender<Bytes>>,
}

/// Creates one direction: what is written to the writer is read from the reader.
pub fn channel(max_frame: u32) -> (MemoryWriter, MemoryReader) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        MemoryWriter { tx: Some(tx) },
        MemoryReader { rx, max_frame },
    )
}

/// Creates a connected pair of duplex ends, each a `(reader, writer)`.
pub fn pair(max_frame: u32) -> ((MemoryReader, MemoryWriter), (MemoryReader, MemoryWriter)) {
    let (a_writer, b_reader) = channel(max_frame);
    let (b_writer, a_reader) = channel(max_frame);
    ((a_reader, a_writer), (b_reader, b_writer))
}

impl FrameRead for MemoryReader {
    async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(mut message) = self.rx.recv().await else {
            return Ok(None);
        };
        let Some(prefix) = message.get(..LEN_PREFIX) else {
            return Err(FrameError::Truncated {
                have: message.len(),
                need: LEN_PREFIX,
            });
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        message.advance(LEN_PREFIX);
        if message.len() != len as usize {
            return Err(FrameError::BoundaryMismatch);
        }
        Ok(Some(message))
    }
}

impl FrameWrite for MemoryWriter {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        for frame in frames {
            tx.send(frame.clone())
                .await
                .map_err(|_| io::ErrorKind::BrokenPipe)?;
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
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
    let ((server_reader, server_writer), (client_reader, client_writer)) = pair(DEFAULT_MAX_FRAME);
    tokio::spawn(async move {
        let config = ServerConfig::default();
        let result = serve_connection(
            server_reader,
            server_writer,
            PeerInfo::unknown(),
            service,
            &config,
            &Shutdown::new(),
        )
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "in-memory connection ended");
        }
    });
    let handle = ClientHandle::connect(
        client_reader,
        client_writer,
        C::SERVICE,
        &ClientConfig::default(),
    )
    .await?;
    Ok(C::from_handle(handle))
}
