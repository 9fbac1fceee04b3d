#![forbid(unsafe_code)]
//! Typed RPC between processes on one machine, over pipes.
//!
//! This crate is what travels: the [wire protocol](protocol), [framing](frame), the
//! client ([`ClientHandle`]) and server ([`serve_connection`]) engines, and the
//! [errors](RpcError). It has no
//! operating-system code; `rpc-transport` binds names to Unix sockets and Windows named pipes
//! and hands the engines their connections.
//!
//! A service is a trait:
//!
//! ```
//! #[rpc_core::service]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: i64, b: i64) -> i64;
//! }
//!
//! struct Calc;
//! impl Calculator for Calc {
//!     async fn add(&self, a: i64, b: i64) -> i64 {
//!         a + b
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::RpcError> {
//! // In memory here; rpc-transport serves and connects by name.
//! let client: CalculatorClient = rpc_core::memory::serve_and_connect(CalculatorServer::new(Calc)).await?;
//! assert_eq!(client.add(2, 3).await?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! The macro keeps the trait (its methods become `fn ... -> impl Future + Send`, which an
//! `async fn` in the impl satisfies) and generates `CalculatorClient`, a cheap-to-clone client
//! whose methods return `Result<_, RpcError>`, and `CalculatorServer<S>`, the dispatcher for any
//! `S: Calculator`. Methods returning `Result<T, E>` reach the client as
//! `Result<Result<T, E>, RpcError>`; `#[rpc(oneway)]` methods are not answered.
//!
//! A [`session`] keeps a typed client connected across restarts of its server: it reconnects
//! with backoff, retries `#[rpc(idempotent)]` methods, and reopens their streams.

pub mod blocking;
mod byte_buf;
mod client;
mod context;
mod decode;
mod error;
pub mod frame;
pub mod memory;
pub mod protocol;
mod quiet;
pub mod schema;
mod server;
mod service;
pub mod session;
mod stream;
mod writer;

pub use byte_buf::ByteBuf;
pub use client::{
    connect, Client, ClientConfig, ClientHandle, MethodBinding, RawReply, RawStream, StreamReceiver,
};
pub use context::{CallContext, CallbackError, PeerInfo};
pub use decode::DecodeError;
pub use error::{ProtocolError, RpcError, SessionError};
pub use rpc_macros::service;
pub use server::{
    refuse_connection, serve_connection, turn_away_shutting_down, ConnectionError, ServerConfig,
};
pub use service::{Dispatch, MethodDescriptor, MethodKind, ServiceDescriptor};
pub use stream::{SendError, Stream, StreamSender};
/// The signal that shuts a server down gracefully (from tokio-util): `cancel()` it and the
/// server stops accepting, lets calls in flight finish, and closes.
pub use tokio_util::sync::CancellationToken;

/// What generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::blocking::{block_on, iter_stream, BlockingClient, StreamIter};
    pub use crate::client::{Client, ClientHandle, StreamReceiver};
    pub use crate::decode::DecodeLimits;
    pub use crate::error::RpcError;
    pub use crate::frame::encode::EncodedResult;
    pub use crate::frame::header::{decode_header, encode_header};
    pub use crate::schema::{MethodSchema, SchemaBuilder, ServiceSchema, Shape};
    pub use crate::service::{decode_args, incoming_stream, DispatchError, HandlerFuture, Outcome};
    pub use crate::service::{Dispatch, MethodDescriptor, MethodKind, ServiceDescriptor};
    pub use crate::session::Link;
    pub use crate::stream::{Incoming, Stream};
    pub use ::core;
    pub use ::futures_util::Stream as FuturesStream;
    pub use ::serde;
    pub use ::std::boxed::Box;
    pub use ::std::sync::Arc;
}
