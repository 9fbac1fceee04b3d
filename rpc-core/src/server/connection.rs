//! One connection's loop: read calls, start them, track them, answer, drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::client::deadlines::Deadlines;
use crate::client::pending::{Conn, Reply};
use crate::client::ClientHandle;
use crate::context::PeerInfo;
use crate::decode::{Plan, Side};
use crate::error::{ProtocolError, RpcError};
use crate::frame::{header_frame, next_incoming, FrameError, FrameRead, FrameWrite, Received};
use crate::protocol::{GoodbyeReason, Header, WireError};
use crate::quiet::Quiet;
use crate::server::call::{failed, Calls};
use crate::server::config::ServerConfig;
use crate::server::handshake::handshake;
use crate::server::serving::Serving;
use crate::server::ConnectionError;
use crate::service::Dispatch;
use crate::writer::{spawn_writer, Closer};

/// Most frames gathered before they are sent. Small, so that a client with many calls in
/// flight gets the first replies while the server still works on the others, and both sides
/// work at once: with 64 calls in flight, one write of 64 replies kept one core idle while the
/// other worked (pipelined calls per second: about 0.1 of the coalescing raw peer with 256,
/// 0.18-0.21 with 8; 4 and 16 were no better).
const MAX_GATHERED: usize = 8;

/// How long the client's data is still waited for after a write to it failed, counted from the
/// last frame read, if the transport does not say that the client closed its end: what it sent
/// before it went (seen first by the failed write) is read, for its one-way calls, and a client
/// whose end is held open elsewhere (a FIFO, a standard input) is let go once nothing more
/// comes. As the client's reader after a failed write.
const WRITE_FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves one connection until the client closes it, it breaks, or `shutdown` is cancelled and
/// the calls in flight have finished.
///
/// # Errors
///
/// Why the connection ended abnormally; the connection is closed in every case and the error is
/// for logging. A client that simply goes away is `Ok`.
pub fn serve_connection<'a, D, R, W>(
    reader: R,
    writer: W,
    peer: PeerInfo,
    service: D,
    config: &'a ServerConfig,
    shutdown: &CancellationToken,
) -> impl Future<Output = Result<(), ConnectionError>> + Send + 'a
where
    D: Dispatch,
    R: FrameRead,
    W: FrameWrite,
{
    // Declared `Send` here, so that callers generic over their own lifetimes can spawn it.
    run(reader, writer, peer, service, config, shutdown.clone())
}

async fn run<D, R, W>(
    mut reader: R,
    mut writer: W,
    peer: PeerInfo,
    service: D,
    config: &ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError>
where
    D: Dispatch,
    R: FrameRead,
    W: FrameWrite,
{
    let descriptor = service.descriptor();
    // Owned, so that the connection's future holds no borrow of the token across its waits.
    let shutdown = shutdown.cancelled_owned();
    tokio::pin!(shutdown);
    reader.set_frame_timeout(config.frame_timeout);
    // A server that is shutting down welcomes no one, also a client whose hello is there.
    let client_max_frame = tokio::select! {
        biased;
        () = &mut shutdown => {
            let _ = writer.write_frames(&[header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown })]).await;
            return Ok(());
        }
        result = tokio::time::timeout(config.handshake_timeout, handshake(&mut reader, &mut writer, &service, config)) => {
            match result {
                Ok(result) => result?,
                Err(_) => return Err(ConnectionError::HandshakeTimeout),
            }
        }
    };
    tracing::debug!(service = descriptor.name, %peer, "connection open");

    // Both polled beside every frame, and ready once at most: polled again only when woken.
    let mut shutdown = Quiet::new(shutdown);
    let (write_err_tx, write_err) = oneshot::channel();
    let mut write_err = Quiet::new(write_err);
    let (outbox, writer_task) = spawn_writer(writer, move |e| {
        let _ = write_err_tx.send(e);
    });
    let peer = Arc::new(peer);
    // The callbacks the client serves, if the service declares some: calls to them go out on
    // this connection and their replies come back on it.
    let callbacks = descriptor.callbacks.map(|callbacks| {
        ClientHandle::callbacks_of_client(
            outbox.clone(),
            callbacks,
            client_max_frame,
            config.decode_limits,
        )
    });
    let callback_conn = callbacks.as_ref().map(|handle| Arc::clone(handle.conn()));
    let _close = CloseOnDrop {
        callbacks: callback_conn.clone(),
        closer: outbox.closer(),
    };
    let mut deadlines = Deadlines::new();
    let calls = Calls {
        service: &service,
        config,
        peer: &peer,
        client_max_frame,
        in_parts: outbox.accepts_parts(),
        link: callbacks.as_ref().map(ClientHandle::link),
        args_plan: Plan::new(descriptor, Side::Args, config.decode_limits),
        uploads_plan: Plan::new(descriptor, Side::Uploads, config.decode_limits),
    };
    let mut serving = Serving::new(calls, outbox.clone(), true);
    let mut draining = false;
    let mut client_gone = false;
    // The client left (it closed its end while this side was not reading, or a write to it
    // failed): what it sent before is still read as handlers finish, for its one-way calls (a
    // message sent is a message handled), up to the end of what it sent; nothing else in it is
    // acted on, as nobody waits for replies any more.
    let mut client_left = false;
    // The client closed its end (the transport said so): what it sent ends.
    let mut client_closed = false;
    // A write failed on a transport that has not said the client closed its end (it may be
    // held open elsewhere, as a FIFO or a standard input may): its data is read until nothing
    // more has come for this long.
    let mut grace: Option<Pin<Box<Sleep>>> = None;
    // A write, or a read once the client went, failed: the connection ends with it once the
    // one-way handlers have finished.
    let mut ended_with = None;
    // Frames to send, gathered while more work is ready at once.
    let mut out: Vec<Bytes> = Vec::new();

    let result = loop {
        if (draining || client_gone) && serving.is_idle() {
            break ended_with
                .take()
                .map_or(Ok(()), |e| Err(ConnectionError::Frame(e)));
        }
        if out.len() >= MAX_GATHERED {
            let _ = outbox.send_all_now(&mut out);
        }
        // Replies the client has not taken yet, and calls to its callbacks: past the limit,
        // either one, stop reading its calls (which make more of both). Counted apart, so that
        // a few callbacks waiting to go out do not add up with replies to stop the reading of
        // the client's replies to them.
        let backlog = outbox.unsent_replies() > config.max_unsent_bytes
            || outbox.unsent_calls() > config.max_unsent_bytes;
        // Each callback still waiting for its reply lends a slot: the client's callback may be
        // calling this server back, and the handler that waits for it holds a slot.
        let max = config.max_in_flight;
        let lent = callback_conn
            .as_ref()
            .map_or(0, |conn| conn.in_flight().min(max));
        // While draining, no handler starts, and the calls in flight may wait on what the client
        // sends (replies to callbacks, their upload's items): reading goes on.
        let reading = !client_gone
            && (client_left || !backlog)
            && (draining || serving.handlers_below(max + lent));
        tokio::select! {
            biased;
            () = serving.joined() => {}
            () = tick(&mut deadlines, callback_conn.as_deref()) => {}
            error = &mut write_err, if ended_with.is_none() => {
                let Ok(error) = error else {
                    break Ok(());
                };
                ended_with = Some(error);
                // The client can take nothing more (it has gone, often seen here before the
                // transport says so): as when it leaves, its calls are dropped and the one-way
                // handlers already started finish, and what it sent is still read; then the
                // connection ends with the error.
                if !client_left {
                    client_left = true;
                    serving.caller_gone();
                    fail_callbacks(callback_conn.as_deref());
                }
                if !client_closed {
                    grace = Some(Box::pin(tokio::time::sleep(WRITE_FAILED_GRACE)));
                }
            }
            // The client's data has not ended: its end is held open elsewhere.
            () = until(&mut grace), if grace.is_some() && !client_gone && !client_closed => {
                client_gone = true;
            }
            () = outbox.replies_and_calls_drained_to(config.max_unsent_bytes), if backlog && !client_gone => {}
            // While not reading, this waits for the client to close its end, without reading;
            // once it has, this waits for handlers instead.
            incoming = next_incoming(&mut reader, reading, config.max_frame), if !client_gone && (reading || !client_closed) => {
                let frame = match incoming {
                    Received::Frame(Ok(Some(frame))) => {
                        // Data still comes: the grace is counted from the last of it.
                        if let Some(grace) = grace.as_mut() {
                            grace.as_mut().reset(tokio::time::Instant::now() + WRITE_FAILED_GRACE);
                        }
                        frame
                    }
                    Received::Frame(Ok(None)) => {
                        client_gone = true;
                        serving.caller_gone();
                        fail_callbacks(callback_conn.as_deref());
                        continue;
                    }
                    Received::Closed => {
                        client_closed = true;
                        grace = None;
                        if !client_left {
                            client_left = true;
                            serving.caller_gone();
                            fail_callbacks(callback_conn.as_deref());
                        }
                        continue;
                    }
                    Received::Frame(Err(error)) => {
                        if let FrameError::TooLarge { len, max } = error {
                            out.push(header_frame(&Header::Goodbye {
                                reason: GoodbyeReason::FrameTooLarge { len, max },
                            }));
                            break Err(ConnectionError::Frame(error));
                        }
                        // The client went (inside a frame, or closing with data of this side's
                        // unread, which resets the connection), or had left already: as when it
                        // leaves, its calls are dropped and the one-way handlers already started
                        // run to their end; then the connection ends with the error.
                        if client_left || went(&error) {
                            ended_with.get_or_insert(error);
                            client_gone = true;
                            serving.caller_gone();
                            fail_callbacks(callback_conn.as_deref());
                            continue;
                        }
                        break Err(ConnectionError::Frame(error));
                    }
                };
                let Ok((header, rest)) = crate::frame::decode_header(&frame) else {
                    break Err(protocol_violation(&mut out, ProtocolError::BadHeader));
                };
                let body_at = frame.len() - rest.len();
                if client_left && !matches!(header, Header::Notify { .. } | Header::Goodbye { .. }) {
                    continue;
                }
                match header {
                    // Sent before the client had the goodbye: refused, never run.
                    Header::Call { id, .. } if draining => {
                        failed(id, WireError::ShuttingDown).push_into(&mut out);
                    }
                    Header::Call { id, method, deadline_us } => {
                        if let Err(error) = serving.call((id, method, deadline_us), &frame, body_at, &mut out) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    // While draining, the reading goes on whatever the handlers: one past
                    // their limit is not run, so that they stay bounded.
                    Header::Notify { .. } if draining && !serving.handlers_below(max + lent) => {
                        tracing::debug!("one-way call while shutting down, past the limit of handlers: not run");
                    }
                    // Sent before the client had the goodbye, and run: unlike a call, it cannot
                    // be refused (there is no reply to say so), and its client took it as sent.
                    // The drain waits for it, within the shutdown timeout.
                    Header::Notify { method } => serving.notify(method, &frame, body_at),
                    // A stop of a result stream is its cancellation.
                    Header::Cancel { id } | Header::StreamStop { stream: id } => serving.cancel(id),
                    Header::Credit { stream, bytes } => {
                        if let Err(error) = serving.credit(stream, bytes) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    Header::StreamItem { stream } => {
                        if let Err(error) = serving.item(stream, frame, body_at) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    Header::StreamPart { stream } => {
                        if let Err(error) = serving.part(stream, &frame, body_at) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    Header::StreamEnd { stream, error } => {
                        if let Err(violation) = serving.end(stream, error) {
                            break Err(protocol_violation(&mut out, violation));
                        }
                    }
                    Header::Goodbye { .. } => {
                        client_gone = true;
                        serving.caller_gone();
                        fail_callbacks(callback_conn.as_deref());
                    }
                    Header::Hello { .. } | Header::Welcome { .. } | Header::Reject(_) => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("handshake")));
                    }
                    Header::Reply { id, status } => {
                        let Some(conn) = &callback_conn else {
                            break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("reply")));
                        };
                        // A reply to a callback no longer in flight crossed its cancel or
                        // deadline and is ignored; one for an id never issued answers none.
                        if !conn.issued(id) {
                            break Err(protocol_violation(&mut out, ProtocolError::UnknownReply { id }));
                        }
                        conn.deliver(id, Reply { status, frame, body_at });
                    }
                }
                // What this read brought is handled: its replies go out now, in one write if
                // the transport takes them at once.
                if !out.is_empty() && reader.holds_nothing() {
                    let _ = outbox.send_all_now(&mut out);
                }
            }
            () = &mut shutdown, if !draining => {
                draining = true;
                // The goodbye first: the calls that the ends of streams fail with `Stopped` are
                // then seen by a client that knows the server is going.
                out.push(header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown }));
                let _ = outbox.send_all_now(&mut out);
                serving.end_streams();
            }
            // Nothing else to do right now: send the replies gathered so far, in one write if
            // the transport takes them at once.
            () = std::future::ready(()), if !out.is_empty() => {
                let _ = outbox.send_all_now(&mut out);
            }
        }
    };
    // Dropping the handlers' tasks cancels them; dropping the outbox lets the writer flush and
    // close.
    let _ = outbox.send_all_now(&mut out);
    serving.stop().await;
    // Handles to the client's callbacks kept by handlers fail from now on, and do not keep
    // the connection open.
    if let Some(conn) = &callback_conn {
        conn.fail_all(RpcError::ConnectionClosed);
    }
    drop(callbacks);
    // A client's replies at a graceful shutdown may take as long as the drain allows (the
    // server closes what is left at its timeout); otherwise a client that does not read holds
    // the connection for a second at most.
    if draining {
        outbox.close_when_sent_within(config.shutdown_timeout);
    } else {
        outbox.close_when_sent();
    }
    drop(outbox);
    let _ = writer_task.await;
    tracing::debug!(service = descriptor.name, "connection closed");
    result
}

/// Closes the connection if its future is dropped before it ends (the server's shutdown
/// timeout passed, or an embedder dropped it): calls to the client's callbacks fail at once,
/// and the transport closes even while handlers keep handles to those callbacks (which hold
/// the connection's writer). At the normal end, both are done already.
struct CloseOnDrop {
    callbacks: Option<Arc<Conn>>,
    closer: Closer,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(conn) = &self.callbacks {
            conn.fail_all(RpcError::ConnectionClosed);
        }
        self.closer.close_now();
    }
}

/// The client is gone: its callbacks will not answer, so the calls to them fail now (a
/// one-way handler waiting on one would otherwise wait for its deadline, and keep the
/// connection's task meanwhile).
fn fail_callbacks(conn: Option<&Conn>) {
    if let Some(conn) = conn {
        conn.fail_all(RpcError::ConnectionClosed);
    }
}

/// Waits for the next deadline event of the calls to the client's callbacks; pending forever
/// without callbacks.
async fn tick(deadlines: &mut Deadlines, conn: Option<&Conn>) {
    match conn {
        Some(conn) => std::future::poll_fn(|cx| deadlines.poll_tick(conn, cx)).await,
        None => std::future::pending().await,
    }
}

/// Waits for `grace` to pass; pending for ever without one.
async fn until(grace: &mut Option<Pin<Box<Sleep>>>) {
    match grace {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Whether a read failed because the client went: the stream ended inside a frame, or the
/// connection was reset (a client that closes with data unread resets it).
fn went(error: &FrameError) -> bool {
    matches!(
        error,
        FrameError::Truncated { .. }
            | FrameError::PeerExited(_)
            | FrameError::Io(
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
    )
}

fn protocol_violation(out: &mut Vec<Bytes>, error: ProtocolError) -> ConnectionError {
    out.push(header_frame(&Header::Goodbye {
        reason: GoodbyeReason::ProtocolViolation,
    }));
    ConnectionError::Protocol(error)
}
