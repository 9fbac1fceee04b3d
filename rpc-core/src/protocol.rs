//! The wire protocol.
//!
//! # Frames
//!
//! Every message is one frame. On byte streams (Unix sockets, FIFOs, anonymous pipes, stdio) the
//! frames follow each other; on Windows message-mode pipes each frame is one pipe message and
//! still carries its length, so that a reader that gets a message in pieces can reassemble it
//! and check that the message boundary agrees.
//!
//! ```text
//!  0               4                                  4 + len
//!  +---------------+-----------------+----------------+
//!  | len: u32 LE   | header (postcard)| body          |
//!  +---------------+-----------------+----------------+
//!                  |<------------- len ------------->|
//! ```
//!
//! * `len` counts the bytes after itself. It is checked against the receiver's maximum frame
//!   size (default [`DEFAULT_MAX_FRAME`], configurable, announced in the handshake) before any
//!   memory is set aside for the frame; a longer frame closes the connection. A frame of length
//!   zero is a protocol error.
//! * `header` is a postcard-encoded [`Header`]: its first byte is the message kind (the variant
//!   index, a varint that fits one byte for every kind), followed by the kind's fields as
//!   postcard varints.
//! * `body` is everything after the header: the postcard encoding of a method's argument tuple
//!   (call, notify), of its value or typed error (reply), or nothing.
//!
//! # Connection
//!
//! The client speaks first. Its first frame must be [`Header::Hello`]; the server answers with
//! [`Header::Welcome`] or [`Header::Reject`] and closes after a reject. A server that gets no
//! hello within its handshake timeout closes the connection. After the welcome both sides may
//! send frames at any time, and replies come back in any order.
//!
//! The hello carries the client's interface fingerprint (a hash of every method's id and
//! shapes, see [`crate::schema`]). Equal fingerprints mean the same interface: the welcome's
//! body is `None`. Otherwise the server still welcomes the client and lists its methods
//! ([`MethodEntry`]): the client binds each of its methods that the server has with the same
//! shapes; calling one the server lacks fails with `RpcError::UnknownMethod`, one whose shapes
//! differ with `RpcError::Incompatible`, both without a round trip, and the connection goes on.
//! So a server may add methods without locking out older clients. The callback service, if
//! any, must match exactly (its fingerprint is in the hello too).
//!
//! ```text
//!  client                                   server
//!    | -- Hello {magic, version, service, fingerprint, max_frame, callbacks} --> |
//!    | <-------------- Welcome {version, max_frame} ----------------- |
//!    | -- Call {id: 1, method: 0, deadline} + (1, 2) --------------> |
//!    | -- Call {id: 2, method: 1, deadline} + (1.0, 0.0) ----------> |
//!    | <-------------- Reply {id: 2, AppError} + CalcError ---------- |
//!    | <-------------- Reply {id: 1, Ok} + 3 ------------------------ |
//!    | -- Notify {method: 2} + ("line",) -------------------------> |
//!    | -- Call {id: 3, ...} ----------------------------------------> |
//!    | -- Cancel {id: 3} -------------------------------------------> |  (handler dropped)
//!    | <-------------- Goodbye {reason: ShuttingDown} --------------- |
//! ```
//!
//! # Message kinds
//!
//! | kind | name | direction | fields | body |
//! |---|---|---|---|---|
//! | 0 | [`Hello`](Header::Hello) | client → server | magic `"PIPR"`, protocol version, service name, interface fingerprint, client's max frame, callback fingerprint | none |
//! | 1 | [`Welcome`](Header::Welcome) | server → client | protocol version, server's max frame | the server's methods if the fingerprints differ |
//! | 2 | [`Reject`](Header::Reject) | server → client | [`Rejection`] | none |
//! | 3 | [`Call`](Header::Call) | either (server → client: callbacks) | request id, method id, deadline (µs from now, optional) | argument tuple |
//! | 4 | [`Notify`](Header::Notify) | either | method id | argument tuple |
//! | 5 | [`Reply`](Header::Reply) | answers a call | request id, [`ReplyStatus`] | value, typed error, or none |
//! | 6 | [`Cancel`](Header::Cancel) | caller → callee | request id | none |
//! | 7 | [`StreamItem`](Header::StreamItem) | producer → consumer | stream id | item |
//! | 8 | [`StreamEnd`](Header::StreamEnd) | producer → consumer | stream id, optional [`WireError`] | none |
//! | 9 | [`Credit`](Header::Credit) | consumer → producer | stream id, bytes granted | none |
//! | 10 | [`Goodbye`](Header::Goodbye) | either | [`GoodbyeReason`] | none |
//! | 11 | [`StreamStop`](Header::StreamStop) | consumer → producer | stream id | none |
//! | 12 | [`StreamPart`](Header::StreamPart) | producer → consumer | stream id | the next bytes of an item |
//!
//! A server that shuts down sends `Goodbye { ShuttingDown }` and starts no call after it: one
//! that arrives later (sent before the client had the goodbye) is answered
//! `Failed(ShuttingDown)`, while a one-way call is run within the limit of handlers (nothing
//! could tell its client that it was not; a one-way call that reaches a server with nothing
//! left to drain may find it closed). It goes on reading, so that the calls in
//! flight get what they wait on from the client (replies to callbacks, items of uploads), and
//! closes once they are answered (or its shutdown timeout passes). Behind the goodbye, open
//! streams end at once with `StreamEnd(ShuttingDown)`, and a call of a stream method whose
//! handler has not returned its stream yet is stopped and answered `Failed(Stopped)` (it ran in
//! part).
//!
//! Request ids are chosen by the caller and unique among its calls in flight, a call's id
//! staying in use until its reply has come (or its cancel is sent) and its argument stream, if
//! it has one, has ended or been cancelled: from then on the caller may use it again, for its
//! very next call. (The id of a call that returns a stream stays in use a moment after the
//! stream's end, until the server has let go of it: a caller should not use it again at once,
//! as this implementation never does, counting its ids up.) A reply
//! or cancel for an id that is not in flight is ignored (it raced with a cancel or a deadline),
//! except that a cancel still ends the call's open argument stream. A reply for an id the caller
//! never sent a call with is a protocol violation (this implementation counts its ids up from 1,
//! so an id above the last it used, or 0, was never used). Deadlines
//! travel as the time left, in microseconds, because both ends share a clock but not an epoch.
//!
//! # Streams
//!
//! A stream has the id of the call that opened it, and each direction of a call has at most
//! one: the server's result stream (a method returning `Stream<T>`) and the client's argument
//! stream (a method taking one). Which one a frame is about follows from who sends it: items
//! and ends travel from producer to consumer, credit and stops from consumer to producer.
//!
//! * **Result streams.** The server answers the call with `Reply { Ok }` once the handler has
//!   returned the stream, then sends items as the client's credit allows, then one
//!   `StreamEnd`. The client grants its first credit right after the call. A client that stops
//!   taking items sends `Cancel`: the server drops the stream.
//! * **Argument streams.** The server grants the first credit once the call has started; a
//!   call it refuses (unknown method, bad arguments, too many streams) gets its reply and no
//!   credit, and the client then sends nothing for it. Once it has had credit, the client sends
//!   items within it and exactly one `StreamEnd` (or a `Cancel` of the call), even after the
//!   reply or a `StreamStop`, so that the server knows when to forget the stream. Before a
//!   `StreamStop`, a clean `StreamEnd` says the client's stream ended; a client whose call is
//!   answered before that sends `Cancel` instead, and the server shows the stream cut to
//!   whoever still takes it (a task its handler gave the stream to). A handler
//!   that drops the stream before its end makes the server send `StreamStop` (never for a
//!   stream it did not open, nor for one it forgot with its cancelled call). A `StreamEnd` with an error (the client's side of the stream
//!   failed) fails the call with that error: the server stops the handler and answers
//!   `Failed`, or ends the call's result stream with the error if it is open.
//!
//! An item whose encoding is longer than [`PART_MAX`] bytes may be sent in parts, so that
//! other frames (the replies of small calls) go out between them: one or more `StreamPart`
//! frames, whose bodies are the first bytes of the item's encoding, then the `StreamItem` frame
//! with the rest. (This implementation sends parts of `PART_MAX` bytes while other frames are
//! being sent on the connection, and whole items otherwise: putting an item together costs the
//! receiver a copy.) The receiver puts the item together as if it had come in
//! one `StreamItem` frame, whose length (header and the whole encoding) is the item's frame
//! length below, and which must not be longer than its maximum frame. A stream has at most one
//! item in parts at a time; its parts come in order.
//!
//! Credit counts bytes: an item costs its frame's length (as its prefix gives it, or as it
//! would if the item was sent in parts) plus [`STREAM_ITEM_OVERHEAD`]. A producer may start an
//! item (send its first frame) while the credit it holds is positive and spends the item's whole
//! cost on it, so it never has more on the way than the consumer granted plus less than one
//! item. An item started with no credit left, an item, part or end for a stream that is not open
//! (never opened, or already ended), an item in parts longer than the maximum frame, and credit
//! that cannot be counted (more than 256 MiB granted and unused, beyond the cost of the item
//! the producer sent last) are protocol violations. Credit or a stop for a stream that has just
//! ended is ignored: it crossed the end on the way. So are the items and end of a result stream
//! that the client cancelled, or whose call it gave up: they crossed the cancel; an item, part,
//! end, credit or stop for the id of no call the client sent still closes its connection.
//!
//! A peer that sends a frame it must not (an unknown kind, a header that does not decode, a
//! frame over the maximum, a second hello) gets a [`Goodbye`](Header::Goodbye) with the reason
//! where possible, and its connection is closed.
//!
//! # Versions
//!
//! The hello's first fields are a fixed magic and [`PROTOCOL_VERSION`]; everything after them
//! may change with the version. A server that does not speak the client's version rejects it
//! with [`Rejection::UnsupportedVersion`]. Version 2 made method ids hashes of their names
//! and the handshake method by method; version 3 sends large stream items in parts; version 4
//! answers a stream method's call stopped by a shutdown with `Failed(Stopped)`.
//!
//! # Size of a call
//!
//! `add(1, 2)` as request 1 of a method with id 0 (`#[rpc(id = 0)]`) with the default 30 s
//! deadline is a 14-byte frame, and its reply `3` an 8-byte one (pinned by this module's
//! tests). A method id that is a hash of the name takes up to 5 bytes instead of 1:
//!
//! ```text
//! call:  0a 00 00 00 | 03 01 00 01 80 87 a7 0e | 02 04
//!        len = 10    | Call id=1 method=0 Some(30_000_000 µs) | (1, 2) as zig-zag varints
//! reply: 04 00 00 00 | 05 01 00 | 06
//!        len = 4     | Reply id=1 Ok | 3
//! ```
//!
//! Without a deadline the call is 10 bytes.

use serde::{Deserialize, Serialize};

/// The first four bytes of every hello.
pub const MAGIC: [u8; 4] = *b"PIPR";

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 4;

/// The service name of a hello from a client that only asks what the server is: it is
/// welcomed whatever the server serves, and may call [`DESCRIBE`].
pub const ANY_SERVICE: &str = "*";

/// The method id of `describe`, which every server answers with its
/// [`ServiceSchema`](crate::schema::ServiceSchema) (postcard-encoded). Method ids are hashes of
/// method names; this one is reserved.
pub const DESCRIBE: u32 = u32::MAX;

/// One method of a server's interface, as its welcome lists them for a client whose
/// fingerprint differs: the client binds each of its methods that the server has with the
/// same hashes, and knows which of the others are missing or differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodEntry {
    /// The method's id.
    pub id: u32,
    /// The hash of its argument side (`MethodSchema::hashes`).
    pub args: u64,
    /// The hash of its result side.
    pub result: u64,
}

/// Default maximum frame length (`len` field), 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// The largest maximum frame a side may set, in bytes: 256 MiB (the largest stream window)
/// less [`STREAM_ITEM_OVERHEAD`], so that the credit a stream item costs is at most what a
/// window holds, which is what credit is counted up to. Larger settings are clamped to it, and
/// a stream's items are held to it whatever maximum the peer announces.
pub const MAX_FRAME_LIMIT: u32 = (1 << 28) - STREAM_ITEM_OVERHEAD;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Credit a stream item costs beyond its frame's length: what a receiver spends keeping an
/// item apart from its bytes, so that a window of tiny items holds no more than a window of
/// large ones.
pub const STREAM_ITEM_OVERHEAD: u32 = 64;

/// The bytes of an item's encoding in each part, when this implementation sends an item in
/// parts (see [Streams](self#streams)): 64 KiB.
pub const PART_MAX: usize = 64 * 1024;

/// A frame header: the message kind and its fields. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Header {
    /// Kind 0: the client's opening message.
    Hello {
        /// Always [`MAGIC`].
        magic: [u8; 4],
        /// The client's [`PROTOCOL_VERSION`].
        version: u16,
        /// The service the client wants.
        service: String,
        /// The client's interface fingerprint of that service.
        fingerprint: u64,
        /// The largest frame the client accepts.
        max_frame: u32,
        /// The fingerprint of the callback service the client serves, 0 if none: it must be
        /// the one the server calls back.
        callbacks: u64,
    },
    /// Kind 1: the server accepts the hello. Body: `Option<Vec<MethodEntry>>`, the server's
    /// methods if the client's fingerprint differs from the server's, else `None` (one byte;
    /// no body at all means `None` too).
    Welcome {
        /// The protocol version the connection speaks.
        version: u16,
        /// The largest frame the server accepts.
        max_frame: u32,
    },
    /// Kind 2: the server refuses the hello; it closes the connection after this frame.
    Reject(Rejection),
    /// Kind 3: a call that expects a reply. Body: the argument tuple.
    Call {
        /// Request id, unique among the caller's calls in flight.
        id: u64,
        /// Method id (a hash of the method's name, or the id it was given).
        method: u32,
        /// Time left to answer, in microseconds; `None` means no deadline.
        deadline_us: Option<u64>,
    },
    /// Kind 4: a one-way call; no reply. Body: the argument tuple.
    Notify {
        /// Method id.
        method: u32,
    },
    /// Kind 5: the answer to a call. Body: depends on the status.
    Reply {
        /// The call's request id.
        id: u64,
        /// What happened.
        status: ReplyStatus,
    },
    /// Kind 6: the caller gave up on a call; the callee drops its handler.
    Cancel {
        /// The call's request id.
        id: u64,
    },
    /// Kind 7: one item of a stream. Body: the item.
    StreamItem {
        /// Stream id (the request id of the call that opened it).
        stream: u64,
    },
    /// Kind 8: a stream ended, with an error if it failed.
    StreamEnd {
        /// Stream id.
        stream: u64,
        /// Why the stream failed, if it did.
        error: Option<WireError>,
    },
    /// Kind 9: the receiver of a stream grants more credit.
    Credit {
        /// Stream id.
        stream: u64,
        /// How many more bytes of item frames may be sent.
        bytes: u32,
    },
    /// Kind 10: the sender closes the connection after this frame (or stops taking calls).
    Goodbye {
        /// Why.
        reason: GoodbyeReason,
    },
    /// Kind 11: the receiver of a stream takes no more of its items; the producer stops and
    /// ends it.
    StreamStop {
        /// Stream id.
        stream: u64,
    },
    /// Kind 12: the next bytes of a stream item sent in parts; the `StreamItem` that follows
    /// carries the rest. Body: those bytes.
    StreamPart {
        /// Stream id.
        stream: u64,
    },
}

/// Why a server refused a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The server does not speak the client's protocol version.
    #[error("protocol version {client} is not supported (server speaks {server})")]
    UnsupportedVersion {
        /// The client's version.
        client: u16,
        /// The server's version.
        server: u16,
    },
    /// The server does not serve the service the client asked for.
    #[error("service {requested:?} is not served here (this server serves {served:?})")]
    UnknownService {
        /// What the client asked for.
        requested: String,
        /// What the server serves.
        served: String,
    },
    /// The callback service the client serves differs from the one the server calls back
    /// (`service` names it); another version of the service itself is bound method by method
    /// instead.
    #[error("interface of {service:?} differs: client fingerprint {client:#018x}, server {server:#018x}")]
    FingerprintMismatch {
        /// The service.
        service: String,
        /// The client's fingerprint.
        client: u64,
        /// The server's fingerprint.
        server: u64,
    },
    /// The server serves as many connections as it is allowed to (in all, or for this user);
    /// the client may try again later.
    #[error("the server is busy: it serves its maximum of {max_connections} connections")]
    ServerBusy {
        /// The limit that was reached.
        max_connections: u32,
    },
}

/// The status of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyStatus {
    /// The handler returned a value; the body is the value.
    Ok,
    /// The handler returned its typed application error; the body is the error.
    AppError,
    /// The framework could not run the handler or send its result; no body.
    Failed(WireError),
}

/// A framework failure reported by the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The method id is not one of the service's.
    #[error("unknown method id {0}")]
    UnknownMethod(u32),
    /// The arguments did not decode as the method's argument types.
    #[error("arguments did not decode: {0}")]
    BadArguments(WireDecodeError),
    /// The deadline passed before the handler finished; the handler was stopped.
    #[error("deadline exceeded on the server")]
    DeadlineExceeded,
    /// The handler panicked.
    #[error("handler panicked")]
    HandlerPanicked,
    /// The handler's result could not be encoded.
    #[error("result could not be encoded")]
    EncodeFailed,
    /// The encoded result is larger than the caller's maximum frame.
    #[error("result of {len} bytes exceeds the caller's maximum frame of {max}")]
    ResultTooLarge {
        /// The frame length that would have been sent.
        len: u64,
        /// The caller's maximum.
        max: u32,
    },
    /// A one-way method was called as a call, or the reverse.
    #[error("method {0} called with the wrong kind (call vs notify)")]
    WrongKind(u32),
    /// The connection has as many streams open as the server allows; the stream was not
    /// opened.
    #[error("the connection has its maximum of {max} streams open")]
    TooManyStreams {
        /// The limit.
        max: u32,
    },
    /// The server is shutting down: it refused the call, which did not run, or it ended the
    /// call's stream.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server stopped the call's handler before it finished, because it is shutting down:
    /// the handler ran in part (a call of a stream method whose handler had not returned its
    /// stream yet when the shutdown began).
    #[error("the server shut down while the handler ran")]
    Stopped,
}

/// Why arguments did not decode, as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WireDecodeError {
    /// Nested deeper than the receiver allows.
    #[error("nested too deep")]
    TooDeep,
    /// Bytes left over after the value.
    #[error("trailing bytes")]
    TrailingBytes,
    /// Not a valid encoding of the type.
    #[error("malformed")]
    Malformed,
}

/// Why a connection is being closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum GoodbyeReason {
    /// The sender is shutting down: it takes no new calls, answers those in flight, then closes.
    #[error("shutting down")]
    ShuttingDown,
    /// The peer sent a frame longer than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The claimed length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// The peer broke the protocol (a bad header, an unexpected kind).
    #[error("protocol violation")]
    ProtocolViolation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_single_bytes_in_documented_order() {
        let cases: Vec<(Header, u8)> = vec![
            (
                Header::Hello {
                    magic: MAGIC,
                    version: PROTOCOL_VERSION,
                    service: String::new(),
                    fingerprint: 0,
                    max_frame: 0,
                    callbacks: 0,
                },
                0,
            ),
            (
                Header::Welcome {
                    version: 1,
                    max_frame: 0,
                },
                1,
            ),
            (
                Header::Reject(Rejection::UnsupportedVersion {
                    client: 2,
                    server: 1,
                }),
                2,
            ),
            (
                Header::Call {
                    id: 0,
                    method: 0,
                    deadline_us: None,
                },
                3,
            ),
            (Header::Notify { method: 0 }, 4),
            (
                Header::Reply {
                    id: 0,
                    status: ReplyStatus::Ok,
                },
                5,
            ),
            (Header::Cancel { id: 0 }, 6),
            (Header::StreamItem { stream: 0 }, 7),
            (
                Header::StreamEnd {
                    stream: 0,
                    error: None,
                },
                8,
            ),
            (
                Header::Credit {
                    stream: 0,
                    bytes: 0,
                },
                9,
            ),
            (
                Header::Goodbye {
                    reason: GoodbyeReason::ShuttingDown,
                },
                10,
            ),
            (Header::StreamStop { stream: 0 }, 11),
            (Header::StreamPart { stream: 0 }, 12),
        ];
        for (header, kind) in cases {
            let bytes = postcard::to_stdvec(&header).expect("encode");
            assert_eq!(bytes.first(), Some(&kind), "{header:?}");
        }
    }

    #[test]
    fn hello_starts_with_kind_then_magic_then_version() {
        let bytes = postcard::to_stdvec(&Header::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            service: "Calculator".into(),
            fingerprint: 7,
            max_frame: 1,
            callbacks: 0,
        })
        .expect("encode");
        assert_eq!(&bytes[..6], &[0, b'P', b'I', b'P', b'R', 4]);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::frame::{encode_frame, FrameBody};

    /// Pins the sizes quoted in the module docs.
    #[test]
    fn add_call_and_reply_sizes() {
        let call = Header::Call {
            id: 1,
            method: 0,
            deadline_us: Some(30_000_000),
        };
        let frame = encode_frame(&call, FrameBody::Value(&(1i64, 2i64)), u32::MAX, false)
            .expect("encode")
            .into_bytes();
        assert_eq!(
            &frame[..],
            &[0x0a, 0, 0, 0, 0x03, 0x01, 0x00, 0x01, 0x80, 0x87, 0xa7, 0x0e, 0x02, 0x04]
        );
        let reply = Header::Reply {
            id: 1,
            status: ReplyStatus::Ok,
        };
        let answer = encode_frame(&reply, FrameBody::Value(&3i64), u32::MAX, false)
            .expect("encode")
            .into_bytes();
        assert_eq!(&answer[..], &[0x04, 0, 0, 0, 0x05, 0x01, 0x00, 0x06]);
        let bare = Header::Call {
            id: 1,
            method: 0,
            deadline_us: None,
        };
        let frame = encode_frame(&bare, FrameBody::Value(&(1i64, 2i64)), u32::MAX, false)
            .expect("encode")
            .into_bytes();
        assert_eq!(frame.len(), 10);
    }
}
