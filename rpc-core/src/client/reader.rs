//! The client connection's reader task: replies to their callers, deadlines, goodbyes.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::client::handle::remote_error;
use crate::client::pending::{Conn, Reply};
use crate::error::{ProtocolError, RpcError};
use crate::frame::FrameRead;
use crate::protocol::{GoodbyeReason, Header, ReplyStatus};
use crate::stream::produce::MAX_CREDIT;

/// Reads frames from the server until the connection ends, and fails calls whose deadline
/// passes; returns why the connection ended.
pub(super) async fn read_replies<R: FrameRead>(
    mut reader: R,
    conn: &Conn,
    max_frame: u32,
) -> RpcError {
    // One timer for the connection, set to the earliest deadline of the calls in flight.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut timer_armed = false;
    let deadline_moved = conn.deadline_moved.notified();
    tokio::pin!(deadline_moved);
    loop {
        let frame = tokio::select! {
            biased;
            frame = reader.read_frame(max_frame) => frame,
            () = &mut deadline_moved => {
                deadline_moved.set(conn.deadline_moved.notified());
                if let Some(at) = conn.lock().check_at {
                    timer.as_mut().reset(at);
                    timer_armed = true;
                }
                continue;
            }
            () = &mut timer, if timer_armed => {
                let next = conn.lock().expire(Instant::now());
                timer_armed = next.is_some();
                if let Some(at) = next {
                    timer.as_mut().reset(at);
                }
                continue;
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return RpcError::ConnectionClosed,
            Err(e) => return e.into(),
        };
        let Ok((header, rest)) = postcard::take_from_bytes::<Header>(&frame) else {
            return ProtocolError::BadHeader.into();
        };
        let body_at = frame.len() - rest.len();
        match header {
            Header::Reply { id, status } => {
                let reply = Reply {
                    status,
                    frame,
                    body_at,
                };
                let waker = conn
                    .lock()
                    .calls
                    .get_mut(&id)
                    .and_then(|waiter| waiter.finish(Ok(reply)));
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Header::Goodbye {
                reason: GoodbyeReason::ShuttingDown,
            } => {
                conn.shutting_down.store(true, Ordering::Release);
            }
            Header::Goodbye { reason } => return RpcError::ClosedByPeer(reason),
            Header::Hello { .. } | Header::Welcome { .. } | Header::Reject(_) => {
                return ProtocolError::UnexpectedKind("handshake").into()
            }
            Header::Call { .. } | Header::Notify { .. } | Header::Cancel { .. } => {
                return ProtocolError::UnexpectedKind("call from server").into()
            }
            Header::StreamItem { stream } => {
                let mut pending = conn.lock();
                // A stream whose receiver is gone takes nothing more: its cancel is on the way.
                let Some(slot) = pending.streams.get_mut(&stream) else {
                    continue;
                };
                if slot.end.is_some() {
                    return ProtocolError::UnexpectedKind("stream item after the end").into();
                }
                if slot.items.len() >= slot.window {
                    return ProtocolError::CreditExceeded { stream }.into();
                }
                slot.items.push_back(Reply {
                    status: ReplyStatus::Ok,
                    frame,
                    body_at,
                });
                let waker = slot.waker.take();
                drop(pending);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Header::StreamEnd { stream, error } => {
                let end = match error {
                    None => Ok(()),
                    Some(error) => Err(remote_error(error)),
                };
                let waker = conn
                    .lock()
                    .streams
                    .get_mut(&stream)
                    .and_then(|slot| slot.finish(end));
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            // Credit or a stop for an argument stream that is no longer sent crossed its end.
            Header::Credit { stream, items } => {
                let pending = conn.lock();
                if let Some(outgoing) = pending.outgoing.get(&stream) {
                    let items = usize::try_from(items).unwrap_or(usize::MAX);
                    if outgoing.credit.available_permits().saturating_add(items) > MAX_CREDIT {
                        return ProtocolError::CreditOverflow { stream }.into();
                    }
                    outgoing.opened.store(true, Ordering::Release);
                    outgoing.credit.add_permits(items);
                }
            }
            Header::StreamStop { stream } => {
                if let Some(outgoing) = conn.lock().outgoing.get(&stream) {
                    outgoing.credit.close();
                }
            }
        }
    }
}
