//! A whole server connection (`rpc_core::serve_connection` over a byte stream, `FrameReader`
//! and `FrameWriter` on a `tokio::io::duplex`) fed arbitrary bytes, three times: raw, and after
//! a valid hello, each followed by a valid call (`add(40, 2)`, request id `u64::MAX`) and the
//! client closing its sending direction; and after a valid hello with the client then waiting
//! without closing. The client reads until the server closes.
//!
//! The runtime is a current-thread one with paused time, so handler sleeps, deadlines, the
//! handshake timeout and the frame timeout pass at once and in the same order on every run.
//!
//! Oracles:
//! * the connection returns within a bound of virtual time once the input is exhausted: the
//!   handshake and frame timeouts, plus what the handlers started may hold it (each one-way
//!   `pause`, which runs to completion, and each `sleep` call until it finishes or its
//!   deadline passes), plus a second; a client that waits between frames is not
//!   disconnected, and once it closes the connection returns within the same bound;
//! * afterwards no task is alive on the runtime and no handler is alive (each counts itself);
//! * how it ends is what a reference walk of the same bytes predicts: the walk splits the
//!   stream into frames and decodes each header as the protocol says, and stops at the first
//!   bad frame, bad header, message kind a client must not send, failed hello or client
//!   goodbye. A stop for a fault must end the connection with that typed error; a goodbye or
//!   the end of the stream must end it cleanly; a frame left incomplete by a waiting client
//!   must end it with `Stalled` after the frame timeout; reaching the appended call must get
//!   it answered (`Ok(42)`, or `ResultTooLarge` if the hello asked for tiny frames) and end
//!   cleanly. A request id used twice may also end it with `DuplicateId`;
//! * what the server writes is whole frames with headers that decode: a welcome (or a
//!   rejection) first, then replies, and a goodbye last exactly when the client broke the
//!   protocol or sent an oversized frame after the handshake.
#![no_main]

use std::collections::HashSet;
use std::pin::pin;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rpc_core::frame::{FrameError, FrameReader, FrameWriter};
use rpc_core::protocol::{
    GoodbyeReason, Header, ReplyStatus, WireError, ANY_SERVICE, MAGIC, PROTOCOL_VERSION,
};
use rpc_core::{CancellationToken, Client, ConnectionError, PeerInfo, ProtocolError, ServerConfig};
use rpc_fuzz::{
    hello_frame, live_handlers, message, parse_frames, paused_runtime, settle, RefEnd,
    TargetClient, TargetImpl, TargetServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The server's maximum frame: small, so that oversized frames are easy to reach.
const MAX_FRAME: u32 = 1024;
/// How long a started frame may take to arrive.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// The request id of the appended call.
const CALL_ID: u64 = u64::MAX;
/// The id of `Target`'s method `name` (a hash of the name).
fn method_id(name: &str) -> u32 {
    <TargetClient as Client>::SERVICE
        .method_named(name)
        .map_or(u32::MAX, |m| m.id)
}

fuzz_target!(|data: &[u8]| {
    run(data, Mode::Raw);
    run(data, Mode::AfterHello);
    run(data, Mode::Stalled);
});

/// What the client sends around the input, and when it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The input, the call, then the client closes.
    Raw,
    /// A valid hello, the input, the call, then the client closes.
    AfterHello,
    /// A valid hello and the input; then the client waits without closing.
    Stalled,
}

/// How the reference walk says the connection must end.
#[derive(Debug)]
enum Expect {
    /// The appended call was read: it must be answered, and the connection end cleanly.
    Answer { client_max: u32 },
    /// The client left (goodbye or end of stream) before the appended call: a clean end.
    Quiet,
    /// The client waits between frames: the connection must stay open until it closes, then
    /// end cleanly.
    Idle,
    /// A fault: the connection must end with this error.
    Fault(Fault),
}

#[derive(Debug, PartialEq)]
enum Fault {
    Frame(FrameError),
    Protocol(ProtocolError),
    Rejected,
}

/// The walk's verdict and what it saw on the way.
#[derive(Debug)]
struct Walk {
    expect: Expect,
    /// The hello was accepted.
    welcomed: bool,
    /// A request id repeated: the connection may end with `DuplicateId` at that point.
    repeated_id: bool,
    /// How long the handlers started before the stop may keep the connection open: the
    /// one-way `pause` calls run to completion one after another, and `sleep` calls hold
    /// their slots until they finish or their deadline passes (while every slot is taken,
    /// the server does not read, and a byte stream cannot tell it that the client left).
    hold: Duration,
}

fn run(garbage: &[u8], mode: Mode) {
    let mut stream = Vec::new();
    if mode != Mode::Raw {
        stream.extend(hello_frame(1 << 20));
    }
    stream.extend_from_slice(garbage);
    let call_at = stream.len();
    if mode != Mode::Stalled {
        stream.extend(message(
            &Header::Call {
                id: CALL_ID,
                method: method_id("add"),
                deadline_us: None,
            },
            &(40i64, 2i64),
        ));
    }
    let walk = walk(&stream, call_at, mode == Mode::Stalled);

    let runtime = paused_runtime();
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(4096);
        let (server_read, server_write) = tokio::io::split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (close, closing) = oneshot::channel::<()>();
        let mut close = Some(close);
        let sending = tokio::spawn(async move {
            // The server may close first; what it has not read is lost with the connection.
            let _ = client_write.write_all(&stream).await;
            if mode == Mode::Stalled {
                let _ = closing.await;
            }
            let _ = client_write.shutdown().await;
        });
        let receiving = tokio::spawn(async move {
            let mut received = Vec::new();
            let _ = client_read.read_to_end(&mut received).await;
            received
        });

        let mut config = ServerConfig::new();
        config
            .max_frame(MAX_FRAME)
            .max_in_flight(8)
            .max_decode_depth(16)
            .frame_timeout(FRAME_TIMEOUT);
        let bound =
            config.get_handshake_timeout() + FRAME_TIMEOUT + walk.hold + Duration::from_secs(1);
        let serving = rpc_core::serve_connection(
            FrameReader::new(server_read),
            FrameWriter::new(server_write),
            PeerInfo::unknown(),
            TargetServer::new(TargetImpl),
            &config,
            &CancellationToken::new(),
        );
        let mut serving = pin!(serving);
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(bound, serving.as_mut()).await {
            Ok(result) => {
                assert!(
                    !matches!(walk.expect, Expect::Idle) || walk.repeated_id,
                    "closed a connection whose client waits between frames: {result:?}"
                );
                result
            }
            Err(_) if matches!(walk.expect, Expect::Idle) => {
                // Still open, as it must be: now the client closes.
                drop(close.take());
                let Ok(result) = tokio::time::timeout(bound, serving).await else {
                    panic!("the connection is still open {bound:?} after the client closed");
                };
                result
            }
            Err(_) => panic!("the connection is still open after {bound:?}; {walk:?}"),
        };
        let took = started.elapsed();
        drop(close);
        let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), sending).await else {
            panic!("the client's sending task did not end");
        };
        let Ok(Ok(received)) = tokio::time::timeout(Duration::from_secs(5), receiving).await else {
            panic!("the server did not close its sending direction");
        };
        settle(Duration::from_millis(1)).await;
        let alive = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(
            alive, 0,
            "tasks alive after the connection ended ({result:?})"
        );
        assert_eq!(
            live_handlers(),
            0,
            "handlers alive after the connection ended ({result:?})"
        );
        check(&walk, &result, &received, took);
    });
}

/// Walks the stream the server reads, as the protocol says the server must; `stalled` if the
/// client waits at the end of the stream instead of closing.
fn walk(stream: &[u8], call_at: usize, stalled: bool) -> Walk {
    let (frames, end) = parse_frames(stream, MAX_FRAME);
    let service = <TargetClient as Client>::SERVICE;
    let mut walk = Walk {
        expect: Expect::Quiet,
        welcomed: false,
        repeated_id: false,
        hold: Duration::ZERO,
    };
    let mut ids = HashSet::new();
    let mut client_max = 0;
    let stop = |walk: Walk, expect: Expect| Walk { expect, ..walk };
    for frame in frames {
        let header = postcard::take_from_bytes::<Header>(frame.bytes(stream)).map(|(h, _)| h);
        if !walk.welcomed {
            let fault = match header {
                Ok(Header::Hello {
                    magic,
                    version,
                    service: name,
                    max_frame,
                    callbacks,
                    ..
                }) => {
                    // Another interface of the service is welcomed (method by method); a
                    // client that asks what the server is (`*`) too. This service calls
                    // nothing back: a client that serves callbacks is refused.
                    let any = name == ANY_SERVICE;
                    if magic != MAGIC {
                        Fault::Protocol(ProtocolError::BadMagic)
                    } else if version != PROTOCOL_VERSION
                        || (!any && name != service.name)
                        || (!any && callbacks != 0)
                    {
                        Fault::Rejected
                    } else {
                        walk.welcomed = true;
                        client_max = max_frame;
                        continue;
                    }
                }
                Ok(_) => Fault::Protocol(ProtocolError::ExpectedHandshake),
                // The hello of another version, whose later fields this one cannot read, is
                // still refused for its version.
                Err(_) if other_version(frame.bytes(stream)).is_some() => Fault::Rejected,
                Err(_) => Fault::Protocol(ProtocolError::BadHeader),
            };
            return stop(walk, Expect::Fault(fault));
        }
        if frame.start == call_at {
            return stop(walk, Expect::Answer { client_max });
        }
        let kind = match header {
            Err(_) => {
                return stop(
                    walk,
                    Expect::Fault(Fault::Protocol(ProtocolError::BadHeader)),
                )
            }
            Ok(Header::Call {
                id,
                method,
                deadline_us,
            }) => {
                walk.repeated_id |= !ids.insert(id);
                if method == method_id("sleep") {
                    let body = &frame.bytes(stream)[header_len(frame.bytes(stream))..];
                    if let Ok((ms, _)) = postcard::take_from_bytes::<u32>(body) {
                        let sleep = Duration::from_millis(ms.into());
                        let deadline = deadline_us.map_or(sleep, Duration::from_micros);
                        walk.hold += sleep.min(deadline);
                    }
                }
                continue;
            }
            Ok(Header::Notify { method }) => {
                if method == method_id("pause") {
                    walk.hold += Duration::from_millis(256);
                }
                continue;
            }
            // A stop of a result stream is its cancellation.
            Ok(Header::Cancel { .. } | Header::StreamStop { .. }) => continue,
            // This service has no stream methods: credit names no open stream, and is ignored
            // (it may race with a stream's end).
            Ok(Header::Credit { .. }) => continue,
            // ... but an item, a part of one or an end of a stream that is not open is a
            // violation.
            Ok(
                Header::StreamItem { stream }
                | Header::StreamPart { stream }
                | Header::StreamEnd { stream, .. },
            ) => {
                let fault = Fault::Protocol(ProtocolError::UnknownStream { stream });
                return stop(walk, Expect::Fault(fault));
            }
            Ok(Header::Goodbye { .. }) => return stop(walk, Expect::Quiet),
            Ok(Header::Hello { .. } | Header::Welcome { .. } | Header::Reject(_)) => "handshake",
            Ok(Header::Reply { .. }) => "reply",
        };
        let fault = Fault::Protocol(ProtocolError::UnexpectedKind(kind));
        return stop(walk, Expect::Fault(fault));
    }
    let expect = match end {
        RefEnd::Clean if stalled => Expect::Idle,
        RefEnd::Partial { .. } if stalled => {
            Expect::Fault(Fault::Frame(FrameError::Stalled(FRAME_TIMEOUT)))
        }
        RefEnd::Clean if walk.welcomed => Expect::Quiet,
        RefEnd::Clean => Expect::Fault(Fault::Protocol(ProtocolError::ExpectedHandshake)),
        RefEnd::Partial { have, need } => {
            Expect::Fault(Fault::Frame(FrameError::Truncated { have, need }))
        }
        RefEnd::TooLarge { len, max } => {
            Expect::Fault(Fault::Frame(FrameError::TooLarge { len, max }))
        }
        RefEnd::Empty => Expect::Fault(Fault::Frame(FrameError::Empty)),
    };
    stop(walk, expect)
}

/// The length of the header at the start of a frame's payload.
fn header_len(payload: &[u8]) -> usize {
    match postcard::take_from_bytes::<Header>(payload) {
        Ok((_, rest)) => payload.len() - rest.len(),
        Err(_) => payload.len(),
    }
}

/// The version of a hello that does not decode as this version's, if it is another: every
/// version's hello begins with its kind (0), the magic and a varint version.
fn other_version(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(&[0u8])?.strip_prefix(&MAGIC[..])?;
    let (version, _) = postcard::take_from_bytes::<u16>(rest).ok()?;
    (version != PROTOCOL_VERSION).then_some(version)
}

fn fault_of(result: &Result<(), ConnectionError>) -> Option<Fault> {
    match result {
        Ok(()) => None,
        Err(ConnectionError::Frame(error)) => Some(Fault::Frame(error.clone())),
        Err(ConnectionError::Protocol(error)) => Some(Fault::Protocol(error.clone())),
        Err(ConnectionError::Rejected(_)) => Some(Fault::Rejected),
        Err(other) => panic!("the connection ended with {other:?}"),
    }
}

/// Checks the connection's end and what the server wrote against the walk.
fn check(walk: &Walk, result: &Result<(), ConnectionError>, received: &[u8], took: Duration) {
    let fault = fault_of(result);
    let duplicate = matches!(fault, Some(Fault::Protocol(ProtocolError::DuplicateId(_))));
    if duplicate {
        assert!(
            walk.repeated_id,
            "DuplicateId without a repeated id; {walk:?}"
        );
    } else {
        match &walk.expect {
            Expect::Answer { .. } | Expect::Quiet | Expect::Idle => {
                assert_eq!(
                    fault, None,
                    "the connection ended with {result:?}; {walk:?}"
                );
            }
            Expect::Fault(want) => assert_eq!(
                fault.as_ref(),
                Some(want),
                "the connection ended with {result:?}; {walk:?}"
            ),
        }
    }

    let (frames, end) = parse_frames(received, u32::MAX);
    assert_eq!(end, RefEnd::Clean, "the server wrote a partial frame");
    let mut headers = Vec::new();
    for frame in &frames {
        let bytes = frame.bytes(received);
        let (header, body) =
            postcard::take_from_bytes::<Header>(bytes).expect("the server's header decodes");
        headers.push((header, body));
    }
    let mut kinds = headers.iter().map(|(header, _)| header);
    if walk.welcomed {
        assert_eq!(
            kinds.next(),
            Some(&Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: MAX_FRAME
            }),
            "the first frame after a valid hello"
        );
        let rest: Vec<&Header> = kinds.collect();
        let goodbye_at = rest
            .iter()
            .position(|h| matches!(h, Header::Goodbye { .. }));
        if let Some(at) = goodbye_at {
            assert_eq!(at, rest.len() - 1, "frames after the server's goodbye");
        }
        for header in &rest {
            assert!(
                matches!(header, Header::Reply { .. } | Header::Goodbye { .. }),
                "the server sent {header:?}"
            );
        }
        let want_goodbye = match &fault {
            Some(Fault::Frame(FrameError::TooLarge { len, max })) => {
                Some(GoodbyeReason::FrameTooLarge {
                    len: *len,
                    max: *max,
                })
            }
            Some(Fault::Protocol(_)) => Some(GoodbyeReason::ProtocolViolation),
            _ => None,
        };
        let goodbye = goodbye_at.map(|at| match rest[at] {
            Header::Goodbye { reason } => reason.clone(),
            _ => unreachable!(),
        });
        assert_eq!(
            goodbye, want_goodbye,
            "the server's goodbye after {result:?}"
        );
    } else {
        match (&fault, headers.as_slice()) {
            (Some(Fault::Rejected), [(Header::Reject(_), _)]) => {}
            (Some(Fault::Rejected), _) => panic!("a rejection sent as {headers:?}"),
            (_, []) => {}
            (_, _) => panic!("sent {headers:?} without a valid hello ({result:?})"),
        }
    }

    if let (Expect::Answer { client_max }, false) = (&walk.expect, duplicate) {
        let answer = headers
            .iter()
            .rev()
            .find(|(header, _)| matches!(header, Header::Reply { id: CALL_ID, .. }));
        match answer {
            Some((
                Header::Reply {
                    status: ReplyStatus::Ok,
                    ..
                },
                body,
            )) => {
                assert_eq!(
                    postcard::from_bytes::<i64>(body).ok(),
                    Some(42),
                    "the answer"
                );
            }
            Some((
                Header::Reply {
                    status: ReplyStatus::Failed(WireError::ResultTooLarge { .. }),
                    ..
                },
                _,
            )) if *client_max < 64 => {}
            other => panic!("the appended call got {other:?}; {walk:?}, {took:?}"),
        }
    }
}
