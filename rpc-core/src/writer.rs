//! The task that owns a connection's sending half and coalesces queued frames into batches.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame::FrameWrite;

/// Most frames written in one batch.
const MAX_BATCH: usize = 256;

/// Queue of encoded frames for a connection's writer task.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(mpsc::UnboundedSender<Bytes>);

impl Outbox {
    /// Queues a frame; fails if the writer task has ended.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        self.0.send(frame).map_err(|e| e.0)
    }
}

/// Starts the writer task. It ends when every [`Outbox`] is dropped (after closing the sending
/// direction) or when a write fails (after calling `on_error`).
pub(crate) fn spawn_writer<W: FrameWrite>(
    writer: W,
    on_error: impl FnOnce(std::io::Error) + Send + 'static,
) -> (Outbox, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_writer(writer, rx, on_error));
    (Outbox(tx), task)
}

async fn run_writer<W: FrameWrite>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    on_error: impl FnOnce(std::io::Error),
) {
    let mut batch = Vec::with_capacity(16);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            let _ = writer.close().await;
            return;
        }
        if let Err(error) = writer.write_frames(&batch).await {
            tracing::debug!(%error, "write failed");
            on_error(error);
            return;
        }
        batch.clear();
    }
}
