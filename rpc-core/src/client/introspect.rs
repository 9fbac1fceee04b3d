//! A client that does not know the service: it asks the server what it serves and calls its
//! methods with arguments encoded elsewhere (the `rpc` command line does).

use serde::ser::SerializeTuple;
use serde::{Serialize, Serializer};

use crate::client::handle::ClientHandle;
use crate::error::RpcError;
use crate::frame::{FrameRead, FrameWrite};
use crate::protocol::{Header, ReplyStatus, ANY_SERVICE, DESCRIBE};
use crate::schema::{SchemaBuilder, ServiceSchema};
use crate::service::{MethodDescriptor, MethodKind, ServiceDescriptor};
use crate::ClientConfig;

static ANY: ServiceDescriptor = ServiceDescriptor {
    name: ANY_SERVICE,
    methods: &[],
    callbacks: None,
    schema: any_schema,
};

fn any_schema() -> &'static ServiceSchema {
    static SCHEMA: std::sync::OnceLock<ServiceSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| SchemaBuilder::new(ANY_SERVICE, None).finish())
}

static DESCRIBE_METHOD: MethodDescriptor = MethodDescriptor {
    id: DESCRIBE,
    name: "describe",
    kind: MethodKind::Call,
    takes_stream: false,
    idempotent: true,
};

/// The answer to a call made with [`ClientHandle::call_raw`]: the encoded value or typed
/// application error, as the method's schema describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawReply {
    /// The method's value (postcard).
    Ok(Vec<u8>),
    /// The method's typed application error (postcard).
    AppError(Vec<u8>),
}

/// Bytes that are already the postcard encoding of an argument tuple: written as they are.
pub(super) struct Encoded<'a>(pub(super) &'a [u8]);

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // postcard writes a tuple's elements one after the other, a `u8` as its byte.
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for byte in self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl ClientHandle {
    /// Connects to whatever service the server serves, without knowing it: the handshake
    /// asks for no particular service. Only [`ClientHandle::describe`] and
    /// [`ClientHandle::call_raw`] make sense on the handle.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::connect`].
    pub async fn connect_any<R: FrameRead, W: FrameWrite>(
        reader: R,
        writer: W,
        config: &ClientConfig,
    ) -> Result<Self, RpcError> {
        let mut config = config.clone();
        config.callbacks = None;
        Self::connect(reader, writer, &ANY, &config).await
    }

    /// Asks the server what it serves: its service's schema, with every method, its id, kind,
    /// arguments, result, error, docs and the shapes of their types.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call`].
    pub async fn describe(&self) -> Result<ServiceSchema, RpcError> {
        self.call(&DESCRIBE_METHOD, &()).await
    }

    /// Calls the method with id `method` with `args`, the postcard encoding of its argument
    /// tuple, for a tool that has the method's schema but not its types.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::call`]; the server answers a method it does not have with
    /// `Remote(UnknownMethod)`.
    pub async fn call_raw(&self, method: u32, args: &[u8]) -> Result<RawReply, RpcError> {
        let descriptor = MethodDescriptor {
            id: method,
            name: "raw",
            kind: MethodKind::Call,
            takes_stream: false,
            idempotent: false,
        };
        let reply = self.request(&descriptor, &Encoded(args)).await?;
        match reply.status {
            ReplyStatus::Ok => Ok(RawReply::Ok(reply.body().to_vec())),
            ReplyStatus::AppError => Ok(RawReply::AppError(reply.body().to_vec())),
            ReplyStatus::Failed(error) => Err(crate::client::handle::remote_error(error)),
        }
    }

    /// Sends a one-way call of the method with id `method` with `args` already encoded.
    ///
    /// # Errors
    ///
    /// As [`ClientHandle::notify`].
    pub async fn notify_raw(&self, method: u32, args: &[u8]) -> Result<(), RpcError> {
        let frame = self.encode(&Header::Notify { method }, &Encoded(args))?;
        self.send_one_way(frame).await
    }
}
