//! Sending a stream's items as its receiver grants credit: the server's result streams and the
//! client's argument streams alike.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use futures_util::future::poll_fn;
use futures_util::FutureExt;
use tokio::sync::Semaphore;

use crate::frame::{encode_small, header_frame, Encoded};
use crate::protocol::{Header, WireError, MAX_FRAME_LIMIT, STREAM_ITEM_OVERHEAD};
use crate::stream::batch::Batch;
use crate::stream::credit::cost;
use crate::stream::ItemSource;
use crate::writer::Outbox;

/// Unsent bytes on the connection past which a stream waits before it sends its next item, so
/// that the replies of small calls are not queued behind many large items.
const BACKLOG: usize = 256 * 1024;

/// Batches during which a stream still sends long items in parts after other frames were last
/// sent on the connection: parts let those frames go out between them, and cost the receiver a
/// copy of the item, which a stream alone on its connection need not pay.
const PARTS_AFTER_OTHERS: u32 = 8;

/// Bytes of items past which a batch is written without waiting for more ready items.
const BATCH_BYTES: usize = 64 * 1024;

/// Most credit, in bytes, a receiver may have granted and the stream not used. It is also the
/// largest stream window, and the largest cost of an item (one of [`MAX_FRAME_LIMIT`] bytes).
pub(crate) const MAX_CREDIT: usize = 1 << 28;

const _: () = assert!(MAX_FRAME_LIMIT as usize + STREAM_ITEM_OVERHEAD as usize == MAX_CREDIT);

/// Most credit, in bytes, a stream's producer may hold (as permits not yet taken): what its
/// receiver granted and the stream has not used, at most [`MAX_CREDIT`], plus what its last
/// item cost beyond the first byte, less than [`MAX_CREDIT`]: the producer takes that from its
/// credit only as it starts its next item, after the receiver may have granted it back. More
/// is a protocol violation.
const MAX_HELD: usize = 2 * MAX_CREDIT - 1;

// The permits a semaphore counts: 2^29 - 1 where `usize` has 32 bits.
const _: () = assert!(MAX_HELD <= Semaphore::MAX_PERMITS);

/// Whether a grant of `bytes` to a producer whose credit holds `held` permits gives it more
/// than its receiver may have granted (see [`MAX_HELD`]): a protocol violation.
pub(crate) fn overflows(held: usize, bytes: u32) -> bool {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    held.saturating_add(bytes) > MAX_HELD
}

/// Sends the items of `source` on stream `id` as `credit` allows, then its end. `credit` holds
/// the bytes the receiver granted and this side has not spent: an item is started while it is
/// positive, and its whole cost is spent on it (see [`crate::stream::credit`]). The stream is
/// polled only when the receiver has room for its next item; once `credit` is closed (the
/// receiver stopped the stream), the stream ends.
///
/// `gate`, if given, is checked, and held, as each batch of items is sent: once it is closed
/// nothing more is sent, not even the end (the call was cancelled, or a shutdown ended the
/// stream). Sending the end closes it, so that nothing else ends the stream again.
pub(crate) async fn produce(
    mut source: ItemSource,
    id: u64,
    credit: &Semaphore,
    outbox: &Outbox,
    (max_frame, in_parts): (u32, bool),
    gate: Option<&Mutex<bool>>,
) {
    let Some(header) = encode_small(&Header::StreamItem { stream: id }) else {
        return end_gated(outbox, id, Some(WireError::EncodeFailed), gate);
    };
    let header = header.as_bytes();
    // A peer may announce a larger maximum than this side lets itself set: an item that cost
    // more than a window would be counted short (see `spent_beyond_one`), so none is sent.
    let max_frame = max_frame.min(MAX_FRAME_LIMIT);
    // Items that are ready at once, with credit for them, go out together in one write.
    let mut batch = Batch::new(id, header, max_frame, in_parts);
    // Bytes of the last item sent beyond the permits taken for it: the next item waits until
    // they, and one more, are granted.
    let mut owed: u32 = 0;
    let mut others = outbox.others_sent();
    let mut in_parts_for = PARTS_AFTER_OTHERS;
    let error = 'stream: loop {
        match credit.acquire_many(owed + 1).await {
            Ok(permit) => permit.forget(),
            Err(_) => break 'stream None,
        }
        outbox.drained_to(BACKLOG).await;
        let now = outbox.others_sent();
        if now == others {
            in_parts_for = in_parts_for.saturating_sub(1);
        } else {
            others = now;
            in_parts_for = PARTS_AFTER_OTHERS;
        }
        batch.cut_long_items(in_parts_for > 0);
        let mut next = AssertUnwindSafe(poll_fn(|cx| source.poll_into(cx, &mut batch)))
            .catch_unwind()
            .await;
        let end = loop {
            match next {
                Ok(Some(Ok(len))) => owed = spent_beyond_one(len),
                Ok(Some(Err(error))) => break Some(Some(error)),
                Ok(None) => break Some(None),
                Err(_) => {
                    tracing::warn!(id, "stream panicked");
                    batch.discard_partial();
                    break Some(Some(WireError::HandlerPanicked));
                }
            }
            if batch.len() >= BATCH_BYTES {
                break None;
            }
            let Ok(permit) = credit.try_acquire_many(owed + 1) else {
                break None;
            };
            match AssertUnwindSafe(poll_fn(|cx| source.poll_into(cx, &mut batch)))
                .catch_unwind()
                .now_or_never()
            {
                Some(ready) => {
                    permit.forget();
                    next = ready;
                }
                // Not ready: the permit goes back, and what is batched goes out.
                None => break None,
            }
        };
        let groups = batch.take();
        let open = gate.map(|gate| gate.lock().unwrap_or_else(|e| e.into_inner()));
        if open.as_deref() == Some(&false) || outbox.send_bulk(groups).is_err() {
            return;
        }
        drop(open);
        if let Some(error) = end {
            break 'stream error;
        }
    };
    end_gated(outbox, id, error, gate);
}

/// The credit an item whose frame is `len` bytes long (as its prefix gives it) costs beyond
/// its first byte, less than [`MAX_CREDIT`] so that a permit count can hold it.
fn spent_beyond_one(len: u32) -> u32 {
    let cap = u64::try_from(MAX_CREDIT - 1).unwrap_or(u64::MAX);
    let beyond = cost(len as usize).saturating_sub(1).min(cap);
    u32::try_from(beyond).unwrap_or(u32::MAX)
}

/// Sends the end of stream `id`.
pub(crate) fn end(outbox: &Outbox, id: u64, error: Option<WireError>) {
    let frame = header_frame(&Header::StreamEnd { stream: id, error });
    let _ = outbox.send_bulk_one(Encoded::One(frame));
}

/// Sends the end of stream `id` if its gate is open, and closes it: a stream ends once, and
/// whoever else would end it (a shutdown, a failure of the call's other stream) finds the gate
/// closed and sends nothing. Without a gate, the end is sent.
pub(crate) fn end_gated(
    outbox: &Outbox,
    id: u64,
    error: Option<WireError>,
    gate: Option<&Mutex<bool>>,
) {
    match gate {
        Some(gate) => end_once(outbox, id, error, gate),
        None => end(outbox, id, error),
    }
}

/// Sends the end of stream `id` if `gate` is open, and closes it (see [`end_gated`]).
pub(crate) fn end_once(outbox: &Outbox, id: u64, error: Option<WireError>, gate: &Mutex<bool>) {
    let mut open = gate.lock().unwrap_or_else(|e| e.into_inner());
    if std::mem::replace(&mut *open, false) {
        end(outbox, id, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_header, FrameRead, FrameReader, FrameWriter};
    use crate::protocol::DEFAULT_MAX_FRAME;
    use crate::writer::spawn_writer;

    /// A stream that ended on its own is not ended again by a shutdown that comes after: one
    /// `StreamEnd` in all, the stream's own.
    #[tokio::test]
    async fn a_stream_that_ended_is_not_ended_again_by_a_shutdown() {
        const ID: u64 = 7;
        let (tx, rx) = tokio::io::duplex(64 * 1024);
        let (outbox, task) = spawn_writer(FrameWriter::new(tx), |e| panic!("write failed: {e}"));
        let source = crate::Stream::new(futures_util::stream::iter(0..3u32)).into_source();
        let credit = Semaphore::new(1024);
        let gate = Mutex::new(true);
        produce(
            source,
            ID,
            &credit,
            &outbox,
            (DEFAULT_MAX_FRAME, false),
            Some(&gate),
        )
        .await;
        // What a shutdown does to every result stream it finds still registered.
        end_once(&outbox, ID, Some(WireError::ShuttingDown), &gate);
        drop(outbox);
        task.await.expect("writer task");
        let mut reader = FrameReader::new(rx);
        let (mut items, mut ends) = (0, Vec::new());
        while let Some(frame) = reader.read_frame(DEFAULT_MAX_FRAME).await.expect("reads") {
            match decode_header(&frame).expect("a header").0 {
                Header::StreamItem { stream: ID } => items += 1,
                Header::StreamEnd { stream: ID, error } => ends.push(error),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        assert_eq!(items, 3);
        assert_eq!(ends, [None]);
    }

    /// A receiver with the largest window takes an item of the largest frame and grants its
    /// cost back while its producer still holds that cost beyond the item's first byte: the
    /// grant is counted, not taken for an overflow, and once the next item starts the producer
    /// holds what the receiver granted, less that item's first byte.
    #[test]
    fn the_grant_for_the_largest_item_is_counted() {
        use crate::stream::credit::{clamp_window, Granted, Taken};

        let window = clamp_window(u32::MAX);
        let len = usize::try_from(MAX_FRAME_LIMIT).expect("fits");
        let credit = Semaphore::new(usize::try_from(window).expect("fits"));
        credit.try_acquire_many(1).expect("credit").forget();
        let owed = spent_beyond_one(MAX_FRAME_LIMIT);
        let mut granted = Granted::new(window);
        granted.spend(len).expect("within credit");
        let grant = Taken::new(window).take(len).expect("a grant");
        assert_eq!(u64::from(grant), cost(len));
        assert!(!overflows(credit.available_permits(), grant));
        credit.add_permits(usize::try_from(grant).expect("fits"));
        credit
            .try_acquire_many(owed + 1)
            .expect("credit for the next item")
            .forget();
        assert_eq!(
            credit.available_permits(),
            usize::try_from(window).expect("fits") - 1
        );
        // What no receiver can have granted is still refused.
        assert!(overflows(MAX_HELD, 1));
        assert!(overflows(credit.available_permits(), u32::MAX));
    }

    /// Neither side can set a maximum frame whose items cost more credit than a window holds.
    #[test]
    fn the_maximum_frame_is_clamped_to_what_a_window_holds() {
        let limit = usize::try_from(MAX_FRAME_LIMIT).expect("fits");
        assert_eq!(cost(limit), u64::try_from(MAX_CREDIT).expect("fits"));
        let server = crate::ServerConfig::new().max_frame(u32::MAX).clone();
        assert_eq!(server.get_max_frame(), MAX_FRAME_LIMIT);
        let client = crate::ClientConfig::new().max_frame(u32::MAX).clone();
        assert_eq!(client.get_max_frame(), MAX_FRAME_LIMIT);
        assert_eq!(
            crate::ServerConfig::new()
                .max_frame(1 << 20)
                .get_max_frame(),
            1 << 20
        );
    }
}
