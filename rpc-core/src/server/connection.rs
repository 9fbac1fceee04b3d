//! One connection's loop: read calls, start them, track them, answer, drain.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::PeerInfo;
use crate::error::ProtocolError;
use crate::frame::{header_frame, FrameError, FrameRead, FrameWrite};
use crate::protocol::{GoodbyeReason, Header, WireError};
use crate::server::call::{failed, Calls, Started};
use crate::server::config::ServerConfig;
use crate::server::handshake::handshake;
use crate::server::streams::Streams;
use crate::server::ConnectionError;
use crate::service::{Dispatch, MethodKind};
use crate::stream::{Inbound, Incoming};
use crate::writer::spawn_writer;

/// Most frames gathered before they are sent.
const MAX_GATHERED: usize = 256;

/// What a handler's task reports when it ends.
enum Finished {
    /// The call with this request id has been answered.
    Call(u64),
    /// A one-way handler finished.
    Oneway,
    /// The stream with this id ended.
    Stream(u64),
}

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
    let client_max_frame = tokio::select! {
        result = tokio::time::timeout(config.handshake_timeout, handshake(&mut reader, &mut writer, &service, config)) => {
            match result {
                Ok(result) => result?,
                Err(_) => return Err(ConnectionError::HandshakeTimeout),
            }
        }
        () = &mut shutdown => {
            let _ = writer.write_frames(&[header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown })]).await;
            return Ok(());
        }
    };
    tracing::debug!(service = descriptor.name, %peer, "connection open");

    let (write_err_tx, mut write_err) = oneshot::channel();
    let (outbox, writer_task) = spawn_writer(writer, move |e| {
        let _ = write_err_tx.send(e);
    });
    let peer = Arc::new(peer);
    let calls = Calls {
        service: &service,
        config,
        peer: &peer,
        client_max_frame,
        in_parts: outbox.accepts_parts(),
    };
    // Handlers that did not finish on their first poll, each on its own task; dropping the set
    // aborts them.
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    // The calls among them, by request id, to cancel them.
    let mut cancels: HashMap<u64, AbortHandle> = HashMap::new();
    // The streams of the calls, both ways.
    let mut streams = Streams::default();
    // Tells the next one-way handler that the previous one has finished (its sender dropped).
    let mut last_oneway: Option<oneshot::Receiver<()>> = None;
    let mut draining = false;
    let mut client_gone = false;
    // Frames to send, gathered while more work is ready at once.
    let mut out: Vec<Bytes> = Vec::new();

    let result = loop {
        if (draining || client_gone) && tasks.is_empty() {
            break Ok(());
        }
        if out.len() >= MAX_GATHERED {
            let _ = outbox.send_all_now(&mut out);
        }
        // Replies the client has not taken yet: past the limit, stop reading its calls.
        let backlog = outbox.unsent() > config.max_unsent_bytes;
        // Open streams are not calls in flight: they live as long as their client wants.
        let handlers = tasks.len().saturating_sub(streams.sending());
        let reading = !draining && !client_gone && !backlog && handlers < config.max_in_flight;
        tokio::select! {
            biased;
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                if let Ok((task, Finished::Call(id) | Finished::Stream(id))) = joined {
                    if cancels.get(&id).is_some_and(|handle| handle.id() == task) {
                        cancels.remove(&id);
                        streams.sent(id);
                    }
                }
            }
            error = &mut write_err => {
                break match error {
                    Ok(e) => Err(ConnectionError::Frame(e)),
                    Err(_) => Ok(()),
                };
            }
            () = outbox.drained_to(config.max_unsent_bytes), if backlog && !client_gone => {}
            // While not reading, this waits for the client to leave, without reading.
            incoming = next_incoming(&mut reader, reading, config.max_frame), if !client_gone => {
                let frame = match incoming {
                    Received::Frame(Ok(Some(frame))) => frame,
                    Received::Frame(Ok(None)) | Received::Closed => {
                        client_gone = true;
                        abort_all(&mut cancels);
                        streams.clear();
                        continue;
                    }
                    Received::Frame(Err(error)) => {
                        if let FrameError::TooLarge { len, max } = error {
                            out.push(header_frame(&Header::Goodbye {
                                reason: GoodbyeReason::FrameTooLarge { len, max },
                            }));
                        }
                        break Err(ConnectionError::Frame(error));
                    }
                };
                let Ok((header, rest)) = postcard::take_from_bytes::<Header>(&frame) else {
                    break Err(protocol_violation(&mut out, ProtocolError::BadHeader));
                };
                let body_at = frame.len() - rest.len();
                match header {
                    Header::Call { id, method, deadline_us } => {
                        if cancels.contains_key(&id) {
                            break Err(protocol_violation(&mut out, ProtocolError::DuplicateId(id)));
                        }
                        let deadline = deadline_us
                            .and_then(|us| Instant::now().checked_add(Duration::from_micros(us)));
                        let info = service.descriptor().method(method);
                        let (kind, takes_stream) = info.map_or((MethodKind::Call, false), |m| (m.kind, m.takes_stream));
                        if kind == MethodKind::Oneway {
                            failed(id, WireError::WrongKind(method)).push_into(&mut out);
                            continue;
                        }
                        let streaming = kind == MethodKind::Stream || takes_stream;
                        if streaming && streams.open() >= config.max_streams {
                            let max = u32::try_from(config.max_streams).unwrap_or(u32::MAX);
                            failed(id, WireError::TooManyStreams { max }).push_into(&mut out);
                            continue;
                        }
                        // The call's stream from the client, opened once the call starts.
                        let inbound = takes_stream.then(|| Inbound::new(config.stream_window));
                        let incoming = inbound.as_ref().map(|slot| {
                            Incoming::new(Arc::clone(slot), id, outbox.clone(), config.stream_window, config.decode_limits)
                        });
                        let dispatched = match calls.dispatch(id, method, kind, &frame, body_at, incoming) {
                            Ok(dispatched) => dispatched,
                            Err(reply) => {
                                reply.push_into(&mut out);
                                continue;
                            }
                        };
                        if let Some(slot) = &inbound {
                            // Before any reply: the client learns that the stream is open.
                            out.push(header_frame(&Header::Credit { stream: id, items: config.stream_window }));
                            streams.receive(id, Arc::clone(slot));
                        }
                        if kind == MethodKind::Stream {
                            let credit = streams.send(id);
                            let rest = calls.start_stream(id, method, deadline, dispatched, inbound, credit, outbox.clone());
                            let handle = tasks.spawn(async move {
                                rest.await;
                                Finished::Stream(id)
                            });
                            cancels.insert(id, handle);
                            continue;
                        }
                        match calls.start_call(id, method, deadline, dispatched, inbound) {
                            Started::Answered(reply) => reply.push_into(&mut out),
                            Started::Running(rest) => {
                                let outbox = outbox.clone();
                                let handle = tasks.spawn(async move {
                                    // Written by this task if the transport is idle.
                                    let _ = outbox.send_encoded(rest.await, true);
                                    Finished::Call(id)
                                });
                                cancels.insert(id, handle);
                            }
                        }
                    }
                    Header::Notify { method } => {
                        // The previous one-way handler, if it is still running.
                        let previous = last_oneway.take().and_then(|mut done| match done.try_recv() {
                            Err(oneshot::error::TryRecvError::Empty) => Some(done),
                            _ => None,
                        });
                        let body = frame.slice(body_at..);
                        match calls.start_oneway(method, &body, previous.is_none()) {
                            Some(rest) => {
                                let (done_tx, done_rx) = oneshot::channel::<()>();
                                last_oneway = Some(done_rx);
                                tasks.spawn(async move {
                                    if let Some(previous) = previous {
                                        // Ends when the previous handler's task drops its sender.
                                        let _ = previous.await;
                                    }
                                    rest.await;
                                    drop(done_tx);
                                    Finished::Oneway
                                });
                            }
                            None => last_oneway = previous,
                        }
                    }
                    // A stop of a result stream is its cancellation.
                    Header::Cancel { id } | Header::StreamStop { stream: id } => {
                        if let Some(handle) = cancels.remove(&id) {
                            tracing::debug!(id, "call cancelled by client");
                            handle.abort();
                        }
                        streams.forget(id);
                    }
                    Header::Credit { stream, items } => {
                        if let Err(error) = streams.credit(stream, items) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    Header::StreamItem { stream } => {
                        if let Err(error) = streams.item(stream, frame, body_at) {
                            break Err(protocol_violation(&mut out, error));
                        }
                    }
                    Header::StreamEnd { stream, error } => {
                        if let Err(violation) = streams.end(stream) {
                            break Err(protocol_violation(&mut out, violation));
                        }
                        // A client whose stream failed gives up its call.
                        if error.is_some() {
                            if let Some(handle) = cancels.remove(&stream) {
                                handle.abort();
                            }
                            streams.forget(stream);
                        }
                    }
                    Header::Goodbye { .. } => {
                        client_gone = true;
                        abort_all(&mut cancels);
                        streams.clear();
                    }
                    Header::Hello { .. } | Header::Welcome { .. } | Header::Reject(_) => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("handshake")));
                    }
                    Header::Reply { .. } => {
                        break Err(protocol_violation(&mut out, ProtocolError::UnexpectedKind("reply")));
                    }
                }
            }
            () = &mut shutdown, if !draining => {
                draining = true;
                // Streams do not end on their own: they end now, with a typed reason.
                for id in streams.drain_sending() {
                    if let Some(handle) = cancels.remove(&id) {
                        handle.abort();
                    }
                    out.push(header_frame(&Header::StreamEnd { stream: id, error: Some(WireError::ShuttingDown) }));
                }
                out.push(header_frame(&Header::Goodbye { reason: GoodbyeReason::ShuttingDown }));
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
    tasks.shutdown().await;
    drop(outbox);
    let _ = writer_task.await;
    tracing::debug!(service = descriptor.name, "connection closed");
    result
}

/// What the connection's reading branch saw.
enum Received {
    /// A frame, the end of the stream, or why reading failed.
    Frame(Result<Option<Bytes>, FrameError>),
    /// The client closed its end while the server was not reading.
    Closed,
}

/// Reads the next frame if `reading`, else waits for the client to close its end.
async fn next_incoming<R: FrameRead>(reader: &mut R, reading: bool, max_frame: u32) -> Received {
    if reading {
        Received::Frame(reader.read_frame(max_frame).await)
    } else {
        reader.closed().await;
        Received::Closed
    }
}

/// The client is gone (end of stream or goodbye): nobody will read replies, so the calls are
/// dropped; one-way calls run to completion.
fn abort_all(cancels: &mut HashMap<u64, AbortHandle>) {
    for (_, handle) in cancels.drain() {
        handle.abort();
    }
}

fn protocol_violation(out: &mut Vec<Bytes>, error: ProtocolError) -> ConnectionError {
    out.push(header_frame(&Header::Goodbye {
        reason: GoodbyeReason::ProtocolViolation,
    }));
    ConnectionError::Protocol(error)
}
