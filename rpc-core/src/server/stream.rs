//! Sending a stream's items as the client grants credit.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use crate::frame::{header_frame, EncodeError, Encoded};
use crate::protocol::{Header, WireError};
use crate::stream::ItemSource;
use crate::writer::Outbox;

/// Unsent bytes on the connection past which a stream waits before it sends its next item, so
/// that the replies of small calls are not queued behind many large items.
const BACKLOG: usize = 256 * 1024;

/// Most credit a client may have granted and the stream not used: more is a protocol
/// violation.
pub(super) const MAX_CREDIT: usize = 1 << 20;

/// Sends the items of `source` on stream `id`, one per unit of `credit`, then its end. The
/// stream is polled only when the client has room for its next item.
pub(super) async fn produce(
    mut source: ItemSource,
    id: u64,
    credit: &Semaphore,
    outbox: &Outbox,
    max_frame: u32,
    in_parts: bool,
) {
    let mut header = [0u8; 16];
    let header = match postcard::to_slice(&Header::StreamItem { stream: id }, &mut header) {
        Ok(header) => &*header,
        Err(_) => return end(outbox, id, Some(WireError::EncodeFailed)),
    };
    let error = loop {
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        outbox.drained_to(BACKLOG).await;
        match AssertUnwindSafe(source.next()).catch_unwind().await {
            Ok(Some(Ok(item))) => match item.into_frame(header, max_frame, in_parts) {
                Ok(frame) => {
                    if outbox.send_encoded(frame, true).is_err() {
                        return;
                    }
                }
                Err(EncodeError::TooLarge { len, max }) => {
                    break Some(WireError::ResultTooLarge { len, max })
                }
                Err(EncodeError::Postcard(_)) => break Some(WireError::EncodeFailed),
            },
            Ok(Some(Err(error))) => break Some(error),
            Ok(None) => break None,
            Err(_) => {
                tracing::warn!(id, "stream panicked");
                break Some(WireError::HandlerPanicked);
            }
        }
    };
    end(outbox, id, error);
}

/// Sends the end of stream `id`.
pub(super) fn end(outbox: &Outbox, id: u64, error: Option<WireError>) {
    let frame = header_frame(&Header::StreamEnd { stream: id, error });
    let _ = outbox.send_encoded(Encoded::One(frame), true);
}
