//! What a service is to the engines: a descriptor (name, fingerprint, methods) and a dispatcher
//! that turns a call frame into a handler future.
//!
//! The `#[service]` macro generates both for a trait. The descriptor is public so that tools
//! (the `rpc` command, a test's raw peer) can read what a service is; [`Dispatch`] is public
//! because the engines serve any implementation of it, but its method takes and returns types
//! of the generated code's (`rpc_core::__private`, which changes without notice): implement it
//! by writing a `#[service]` trait.

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::decode::{self, DecodeLimits};
use crate::frame::encode::EncodedResult;
use crate::protocol::WireError;
use crate::schema::ServiceSchema;
use crate::stream::Incoming;

/// Static description of a service: what the handshake compares and what tracing names.
#[derive(Debug)]
pub struct ServiceDescriptor {
    /// The service's name, sent in the handshake (the trait's name unless renamed).
    pub name: &'static str,
    /// The methods, in the trait's order.
    pub methods: &'static [MethodDescriptor],
    /// The service the server calls back on the client's side of each connection
    /// (`#[service(callbacks = Other)]`), if any.
    pub callbacks: Option<&'static ServiceDescriptor>,
    /// The service's schema, traced the first time it is asked for.
    pub schema: fn() -> &'static ServiceSchema,
}

impl ServiceDescriptor {
    /// The method with wire id `id`, if there is one.
    pub fn method(&self, id: u32) -> Option<&'static MethodDescriptor> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The method named `name`, if there is one.
    pub fn method_named(&self, name: &str) -> Option<&'static MethodDescriptor> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// The service's schema: its methods and the shapes of their types.
    pub fn schema(&self) -> &'static ServiceSchema {
        (self.schema)()
    }

    /// A hash of the service's name and of every method's id and shapes
    /// ([`ServiceSchema::fingerprint`]): client and server compare it in the handshake, then
    /// method by method if it differs.
    pub fn fingerprint(&self) -> u64 {
        self.schema().fingerprint()
    }

    /// Whether a method takes or returns a stream. A service that does cannot be a callback
    /// service (`#[service(callbacks = ...)]`): the stream frames of both directions of a
    /// connection would share one id space. The macro checks this at compile time.
    pub const fn has_streams(&self) -> bool {
        let mut i = 0;
        while i < self.methods.len() {
            let method = &self.methods[i];
            if method.takes_stream || matches!(method.kind, MethodKind::Stream) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// One method of a service.
#[derive(Debug)]
pub struct MethodDescriptor {
    /// Wire id: a hash of the method's name, or the id it was given with `#[rpc(id = N)]`;
    /// it does not depend on the method's position, so methods can be reordered and added.
    pub id: u32,
    /// The method's name, for tracing and errors.
    pub name: &'static str,
    /// Whether the method answers.
    pub kind: MethodKind,
    /// Whether the method takes a stream from the client (an argument of type
    /// [`crate::Stream`]), whose items follow the call.
    pub takes_stream: bool,
    /// `#[rpc(idempotent)]`: running the method twice has the effect of running it once, so a
    /// session may send it again after a reconnect ([`crate::session`]).
    pub idempotent: bool,
}

/// Whether a method answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// A call: the client waits for a reply.
    Call,
    /// A one-way notification: no reply is sent, the client does not wait for the handler.
    Oneway,
    /// A call whose result is a stream of items from the server ([`crate::Stream`]).
    Stream,
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
    /// A stream method returned its stream; its items go out as the client grants credit.
    Stream(crate::stream::ItemSource),
}

impl Outcome {
    /// A stream method's stream, its items to be encoded as they are sent.
    pub fn stream<T: Serialize + Send + 'static>(stream: crate::Stream<T>) -> Self {
        Outcome::Stream(stream.into_source())
    }

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
    /// The method takes a stream from the client and the engine gave it none (or the
    /// reverse): the dispatcher and the descriptor disagree.
    #[error("method {0} takes a stream from the client and none was given")]
    MissingStream(u32),
}

impl From<&DispatchError> for WireError {
    fn from(error: &DispatchError) -> Self {
        match error {
            DispatchError::UnknownMethod(id) => WireError::UnknownMethod(*id),
            DispatchError::BadArguments(e) => WireError::BadArguments(e.into()),
            DispatchError::MissingStream(id) => WireError::WrongKind(*id),
        }
    }
}

/// A server-side service: turns calls into handler futures.
///
/// Generated by `#[service]` as `<Trait>Server<S>`; not meant to be implemented by hand (its
/// `dispatch` speaks the generated code's private types). A server that adapts another is a
/// `#[service]` trait whose implementation calls the other.
pub trait Dispatch: Send + Sync + 'static {
    /// The service this dispatcher serves.
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Decodes `args` for method `method` and returns the handler future. `incoming` is the
    /// stream from the client for a method that takes one
    /// ([`MethodDescriptor::takes_stream`]), else `None`.
    ///
    /// # Errors
    ///
    /// [`DispatchError::UnknownMethod`] if `method` is not a method id of the service,
    /// [`DispatchError::BadArguments`] if `args` do not decode as its argument types (within
    /// `limits`), [`DispatchError::MissingStream`] if the method takes a stream and `incoming`
    /// is `None`.
    fn dispatch(
        &self,
        method: u32,
        args: &[u8],
        limits: &DecodeLimits,
        incoming: Option<Incoming>,
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
        incoming: Option<Incoming>,
    ) -> Result<HandlerFuture, DispatchError> {
        (**self).dispatch(method, args, limits, incoming)
    }
}

/// The stream from the client for a dispatcher, typed.
///
/// # Errors
///
/// [`DispatchError::MissingStream`] if the engine gave none.
pub fn incoming_stream<T>(
    incoming: Option<Incoming>,
    method: u32,
) -> Result<crate::Stream<T>, DispatchError>
where
    T: DeserializeOwned + Send + 'static,
{
    incoming
        .map(crate::Stream::incoming)
        .ok_or(DispatchError::MissingStream(method))
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
