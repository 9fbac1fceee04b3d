//! What a service is to the engines: a descriptor (name, fingerprint, methods) and a dispatcher
//! that turns a call frame into a handler future.
//!
//! The `#[service]` macro generates both for a trait; the types here are public so that a
//! hand-written service (or a test) can use the same engine.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, Bytes};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::decode::{self, DecodeLimits};
use crate::frame::{checked_len, encode_into, EncodeError};
use crate::protocol::{WireError, LEN_PREFIX};

/// Static description of a service: what the handshake compares and what tracing names.
#[derive(Debug)]
pub struct ServiceDescriptor {
    /// The service's name, sent in the handshake (the trait's name unless renamed).
    pub name: &'static str,
    /// A hash of every method's name, kind, argument types and result type, in order.
    ///
    /// Client and server must agree on it: postcard is not self-describing, so a mismatch would
    /// otherwise decode silently wrong values.
    pub fingerprint: u64,
    /// The methods, indexed by their wire id.
    pub methods: &'static [MethodDescriptor],
}

impl ServiceDescriptor {
    /// The method with wire id `index`, if there is one.
    pub fn method(&self, index: u32) -> Option<&'static MethodDescriptor> {
        self.methods.get(usize::try_from(index).ok()?)
    }
}

/// One method of a service.
#[derive(Debug)]
pub struct MethodDescriptor {
    /// Wire id: the method's position in the trait.
    pub index: u32,
    /// The method's name, for tracing and errors.
    pub name: &'static str,
    /// Whether the method answers.
    pub kind: MethodKind,
}

/// Whether a method answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// A call: the client waits for a reply.
    Call,
    /// A one-way notification: no reply is sent, the client does not wait for the handler.
    Oneway,
}

/// The future a dispatcher returns for one call.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// What a handler produced, already encoded.
#[derive(Debug)]
pub enum Outcome {
    /// The method's value.
    Ok(EncodedResult),
    /// The method's typed application error `E` of `Result<T, E>`.
    AppError(EncodedResult),
    /// The handler finished but its result could not be encoded.
    Failed(WireError),
    /// A one-way method finished; nothing is sent.
    NoReply,
}

impl Outcome {
    /// Encodes a method's value.
    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Self {
        match EncodedResult::encode(value) {
            Ok(encoded) => Outcome::Ok(encoded),
            Err(_) => Outcome::Failed(WireError::EncodeFailed),
        }
    }

    /// Encodes the result of a method declared as returning `Result<T, E>`.
    pub fn from_result<T: Serialize, E: Serialize>(result: &Result<T, E>) -> Self {
        match result {
            Ok(value) => Self::ok(value),
            Err(error) => match EncodedResult::encode(error) {
                Ok(encoded) => Outcome::AppError(encoded),
                Err(_) => Outcome::Failed(WireError::EncodeFailed),
            },
        }
    }
}

/// Room in front of an encoded result for the reply frame's length prefix and header: a reply
/// header is a kind byte, a request id (a varint of at most 10 bytes) and a one-byte status.
const REPLY_HEADROOM: usize = LEN_PREFIX + 12;

/// A value encoded (postcard) as the body of a reply.
///
/// It is encoded once, into a buffer of exactly the reply frame's size with room in front for
/// the frame's prefix and header, so that the reply goes out without another copy.
pub struct EncodedResult {
    buf: Vec<u8>,
}

impl EncodedResult {
    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// postcard's error if `value` cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, postcard::Error> {
        let len = postcard::experimental::serialized_size(value)?;
        let mut buf = Vec::with_capacity(REPLY_HEADROOM + len);
        buf.resize(REPLY_HEADROOM, 0);
        encode_into(value, &mut buf)?;
        Ok(Self { buf })
    }

    /// The encoded value.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(REPLY_HEADROOM..).unwrap_or_default()
    }

    /// The reply frame: `header` (postcard) then this value, behind the length prefix.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] if the frame would exceed `max_frame`.
    pub(crate) fn into_frame(self, header: &[u8], max_frame: u32) -> Result<Bytes, EncodeError> {
        let body_len = self.buf.len().saturating_sub(REPLY_HEADROOM);
        let len = checked_len(header.len() as u64 + body_len as u64, max_frame)?;
        let mut buf = self.buf;
        let start = REPLY_HEADROOM.checked_sub(LEN_PREFIX + header.len());
        let Some(start) = start else {
            // A header longer than the room set aside (it cannot be): build the frame anew.
            let mut frame = Vec::with_capacity(LEN_PREFIX + len as usize);
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(header);
            frame.extend_from_slice(buf.get(REPLY_HEADROOM..).unwrap_or_default());
            return Ok(Bytes::from(frame));
        };
        if let Some(room) = buf.get_mut(start..REPLY_HEADROOM) {
            let (prefix, rest) = room.split_at_mut(LEN_PREFIX);
            prefix.copy_from_slice(&len.to_le_bytes());
            rest.copy_from_slice(header);
        }
        let mut frame = Bytes::from(buf);
        frame.advance(start);
        Ok(frame)
    }
}

impl std::fmt::Debug for EncodedResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedResult")
            .field("len", &self.as_bytes().len())
            .finish()
    }
}

/// Why a call frame could not become a handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The method id is not one of the service's.
    #[error("unknown method id {0}")]
    UnknownMethod(u32),
    /// The arguments did not decode as the method's argument types.
    #[error("arguments did not decode")]
    BadArguments(#[source] decode::DecodeError),
}

impl From<&DispatchError> for WireError {
    fn from(error: &DispatchError) -> Self {
        match error {
            DispatchError::UnknownMethod(id) => WireError::UnknownMethod(*id),
            DispatchError::BadArguments(e) => WireError::BadArguments(e.into()),
        }
    }
}

/// A server-side service: turns calls into handler futures.
///
/// Generated by `#[service]` as `<Trait>Server<S>`; implement it by hand only for tests or
/// adapters.
pub trait Dispatch: Send + Sync + 'static {
    /// The service this dispatcher serves.
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Decodes `args` for method `method` and returns the handler future.
    ///
    /// # Errors
    ///
    /// [`DispatchError::UnknownMethod`] if `method` is not a method id of the service,
    /// [`DispatchError::BadArguments`] if `args` do not decode as its argument types (within
    /// `limits`).
    fn dispatch(
        &self,
        method: u32,
        args: &[u8],
        limits: &DecodeLimits,
    ) -> Result<HandlerFuture, DispatchError>;
}

impl<D: Dispatch + ?Sized> Dispatch for std::sync::Arc<D> {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        (**self).descriptor()
    }

    fn dispatch(
        &self,
        method: u32,
        args: &[u8],
        limits: &DecodeLimits,
    ) -> Result<HandlerFuture, DispatchError> {
        (**self).dispatch(method, args, limits)
    }
}

/// Decodes a method's arguments for a dispatcher.
///
/// # Errors
///
/// [`DispatchError::BadArguments`] if the bytes are not exactly one `T` within `limits`.
pub fn decode_args<T: DeserializeOwned>(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<T, DispatchError> {
    decode::from_slice(bytes, limits).map_err(DispatchError::BadArguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, FrameBody};
    use crate::protocol::{Header, ReplyStatus};

    /// A reply built in the room in front of an encoded result is the frame that encoding the
    /// header and the value in one go gives.
    #[test]
    fn reply_frame_in_place_matches_a_fresh_encoding() {
        for id in [0, 1, 300, u64::MAX] {
            for value in [vec![], vec![7u8; 3], vec![1u8; 70_000]] {
                let header = Header::Reply {
                    id,
                    status: ReplyStatus::Ok,
                };
                let expected =
                    encode_frame(&header, FrameBody::Value(&value), u32::MAX).expect("encodes");
                let encoded = EncodedResult::encode(&value).expect("encodes");
                assert_eq!(
                    encoded.as_bytes(),
                    postcard::to_stdvec(&value).expect("encodes")
                );
                let header = postcard::to_stdvec(&header).expect("encodes");
                let frame = encoded.into_frame(&header, u32::MAX).expect("fits");
                assert_eq!(frame, expected, "id {id}, {} bytes", value.len());
            }
        }
    }

    #[test]
    fn reply_frame_checks_the_maximum() {
        let encoded = EncodedResult::encode(&[0u8; 10]).expect("encodes");
        assert!(matches!(
            encoded.into_frame(&[5, 1, 0], 12),
            Err(EncodeError::TooLarge { len: 13, max: 12 })
        ));
        let encoded = EncodedResult::encode(&[0u8; 9]).expect("encodes");
        assert_eq!(
            encoded.into_frame(&[5, 1, 0], 12).expect("fits").len(),
            4 + 12
        );
    }
}
