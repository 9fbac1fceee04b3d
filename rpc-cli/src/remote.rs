//! The backend that reaches services: by name through `rpc-transport`, described by the
//! server itself (`describe`), called with arguments the codec encoded.

use std::time::Duration;

use rpc_core::schema::ServiceSchema;
use rpc_core::{ClientConfig, ClientHandle, RawReply, RpcError};
use rpc_transport::{ConnectError, Endpoint};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::describe::{Describe, MethodKind, MethodSchema};
use crate::error::{CliError, ConnectionFailure, RemoteFailure};
use crate::run::{Backend, Reply, ServiceEntry};

/// What `rpc list` shows in place of the interface of a service at its limit of connections,
/// which it cannot ask.
pub const BUSY: &str = "(busy: at its limit of connections)";

/// How long `rpc list` waits for each service to connect, to answer the handshake and to
/// describe itself: one that hangs does not hold up the list for the usual timeouts.
const LIST_DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `rpc list` shows in place of the interface of a server it cannot reach or that does not
/// describe itself, followed by why.
pub const UNREACHABLE: &str = "(unreachable: ";

/// Reaches the services of this machine; runs its own single-thread runtime.
#[derive(Debug)]
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    /// The last connection made, by name: a call after a `describe` goes to the server that
    /// described itself, not to another that may have taken the name since with another
    /// interface (the arguments were encoded from the first one's schema).
    last: Option<(String, ClientHandle)>,
}

impl Remote {
    /// A backend with its runtime.
    ///
    /// # Errors
    ///
    /// [`CliError::Connection`] if the runtime cannot start.
    pub fn new() -> Result<Self, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CliError::Connection {
                service: "the local runtime".to_owned(),
                source: ConnectionFailure::Runtime(source),
            })?;
        Ok(Self {
            runtime,
            last: None,
        })
    }

    /// The connection to `name`: the last one made, if it was to `name`, else a new one.
    fn connect(&mut self, name: &str) -> Result<ClientHandle, CliError> {
        self.reach(name).map_err(|e| connection(name, e))
    }

    /// As [`Remote::connect`], with the transport's own error.
    fn reach(&mut self, name: &str) -> Result<ClientHandle, ConnectError> {
        self.reach_with(name, &ClientConfig::default())
    }

    /// As [`Remote::reach`], with `config`.
    fn reach_with(
        &mut self,
        name: &str,
        config: &ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        if let Some((last, handle)) = &self.last {
            if last == name {
                return Ok(handle.clone());
            }
        }
        let endpoint = Endpoint::new(name)?;
        let handle = self
            .runtime
            .block_on(rpc_transport::connect_any(&endpoint, config))?;
        self.last = Some((name.to_owned(), handle.clone()));
        Ok(handle)
    }

    fn schema(&self, name: &str, handle: &ClientHandle) -> Result<ServiceSchema, CliError> {
        self.runtime
            .block_on(handle.describe())
            .map_err(|e| remote(name, e))
    }
}

/// The entry of `rpc list` for a server it cannot reach or that does not describe itself.
fn unreachable(name: String, error: &dyn std::error::Error) -> ServiceEntry {
    ServiceEntry {
        name,
        interface: format!("{UNREACHABLE}{})", crate::error::chain(error)),
    }
}

fn connection(name: &str, error: ConnectError) -> CliError {
    CliError::Connection {
        service: name.to_owned(),
        source: ConnectionFailure::Connect(error),
    }
}

/// A framework error of a call: a broken connection (or one whose server is shutting down) is
/// a connection error, anything else the service's refusal.
fn remote(name: &str, error: RpcError) -> CliError {
    let service = name.to_owned();
    match error {
        RpcError::ConnectionClosed
        | RpcError::ShuttingDown
        | RpcError::PeerExited { .. }
        | RpcError::Frame(_)
        | RpcError::ClosedByPeer(_) => CliError::Connection {
            service,
            source: ConnectionFailure::Lost(error),
        },
        other => CliError::Remote {
            service,
            source: RemoteFailure::Refused(other),
        },
    }
}

/// The same value in another type with the same serde form: the server's shapes as
/// serde-reflection formats.
fn convert<T: Serialize, U: DeserializeOwned>(value: &T) -> Option<U> {
    serde_json::to_value(value)
        .ok()
        .and_then(|json| serde_json::from_value(json).ok())
}

/// The server's schema as the commands read it. A method this build cannot read (of a kind it
/// does not know, or with shapes it cannot convert: a newer server's) is left out, so that the
/// others can still be called; `None` when the named types themselves cannot be read.
pub fn describe_schema(schema: &ServiceSchema) -> Option<Describe> {
    let methods = schema
        .methods
        .iter()
        .filter_map(|method| {
            Some(MethodSchema {
                name: method.name.clone(),
                id: method.id,
                // A kind this build does not know is not called as something else.
                kind: match method.kind.as_str() {
                    "oneway" => MethodKind::Oneway,
                    "stream" => MethodKind::Stream,
                    "call" => MethodKind::Call,
                    _ => return None,
                },
                docs: method.docs.clone(),
                args: method.args.clone(),
                args_format: convert(&method.args_shape)?,
                result: method.result.clone(),
                result_format: convert(&method.result_shape)?,
                error: method.error.as_ref().map(|(name, _)| name.clone()),
                error_format: match &method.error {
                    Some((_, shape)) => Some(convert(shape)?),
                    None => None,
                },
                upload: method.stream_arg.as_ref().map(|(name, _, _)| name.clone()),
            })
        })
        .collect();
    Some(Describe {
        service: schema.service.clone(),
        fingerprint: schema.bounded_fingerprint(),
        methods,
        registry: convert(&schema.types)?,
    })
}

impl Backend for Remote {
    fn list(&mut self) -> Result<Vec<ServiceEntry>, CliError> {
        let names = rpc_transport::list_endpoints().map_err(|e| connection("services", e))?;
        let mut quick = ClientConfig::new();
        quick
            .connect_timeout(LIST_DESCRIBE_TIMEOUT)
            .handshake_timeout(LIST_DESCRIBE_TIMEOUT);
        let mut entries = Vec::new();
        for name in names {
            let handle = match self.reach_with(&name, &quick) {
                Ok(handle) => handle,
                // A server at its limit of connections is a service all the same.
                Err(ConnectError::Busy { .. }) => {
                    entries.push(ServiceEntry {
                        name,
                        interface: BUSY.to_owned(),
                    });
                    continue;
                }
                // A socket left by a dead server is not a service.
                Err(ConnectError::NotFound { .. }) => continue,
                // A server this user may not reach, or that does not speak the protocol, is
                // shown with the reason rather than hidden.
                Err(error) => {
                    entries.push(unreachable(name, &error));
                    continue;
                }
            };
            let described = self
                .runtime
                .block_on(handle.with_timeout(Some(LIST_DESCRIBE_TIMEOUT)).describe());
            entries.push(match described {
                Ok(schema) => ServiceEntry {
                    name,
                    interface: schema.service,
                },
                Err(error) => unreachable(name, &error),
            });
        }
        Ok(entries)
    }

    fn describe(&mut self, name: &str) -> Result<Describe, CliError> {
        let handle = self.connect(name)?;
        let schema = self.schema(name, &handle)?;
        describe_schema(&schema).ok_or_else(|| CliError::Remote {
            service: name.to_owned(),
            source: RemoteFailure::UnreadableDescription,
        })
    }

    fn call(
        &mut self,
        name: &str,
        method: &MethodSchema,
        args: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Reply, CliError> {
        let handle = self.connect(name)?;
        let handle = match timeout {
            Some(timeout) => handle.with_timeout(Some(timeout)),
            None => handle,
        };
        if method.kind == MethodKind::Oneway {
            self.runtime
                .block_on(async {
                    handle.notify_raw(method.id, &args).await?;
                    // This process exits next: a round trip after the one-way call makes sure
                    // it has been written and read (the server takes frames in order).
                    handle.describe().await.map(drop)
                })
                .map_err(|e| remote(name, e))?;
            return Ok(Reply::Ok(Vec::new()));
        }
        match self.runtime.block_on(handle.call_raw(method.id, &args)) {
            Ok(RawReply::Ok(value)) => Ok(Reply::Ok(value)),
            Ok(RawReply::AppError(error)) => Ok(Reply::Err(error)),
            Err(error) => Err(remote(name, error)),
        }
    }

    fn watch(
        &mut self,
        name: &str,
        method: &MethodSchema,
        args: Vec<u8>,
        item: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let handle = self.connect(name)?;
        self.runtime.block_on(async {
            let mut items = handle
                .open_stream_raw(method.id, &args)
                .await
                .map_err(|e| remote(name, e))?;
            // Until the stream ends; Ctrl-C ends the process.
            while let Some(next) = futures_util::StreamExt::next(&mut items).await {
                item(&next.map_err(|e| remote(name, e))?)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method of a kind this build does not know is left out; the others can be called
    /// (before, one such method made the whole service unusable).
    #[test]
    fn a_method_of_an_unknown_kind_is_left_out() {
        use rpc_core::schema::{MethodSchema, Shape};
        let method = |name: &str, kind: &str| MethodSchema {
            name: name.to_owned(),
            id: 1,
            kind: kind.to_owned(),
            docs: String::new(),
            args: Vec::new(),
            args_shape: Shape::Tuple(Vec::new()),
            stream_arg: None,
            result: "u32".to_owned(),
            result_shape: Shape::U32,
            error: None,
        };
        let schema = ServiceSchema {
            service: "svc".to_owned(),
            callbacks: None,
            methods: vec![method("later", "sometime"), method("now", "call")],
            types: Default::default(),
            untraced: Vec::new(),
        };
        let describe = describe_schema(&schema).expect("readable");
        let names: Vec<_> = describe.methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["now"]);
    }

    /// A server that is shutting down (one that restarts, under the connection a `describe`
    /// made) cannot be reached: exit code 3, not the service's refusal.
    #[test]
    fn a_server_shutting_down_is_a_connection_error() {
        assert!(matches!(
            remote("svc", RpcError::ShuttingDown),
            CliError::Connection { .. }
        ));
        assert!(matches!(
            remote("svc", RpcError::DeadlineExceeded),
            CliError::Remote { .. }
        ));
    }

    /// The service's refusal keeps its cause: the printed chain ends with why the arguments
    /// did not decode (before, it ended with "server failed the call"), each cause once.
    #[test]
    fn a_refusal_prints_its_cause_once() {
        use rpc_core::protocol::{WireDecodeError, WireError};
        let error = remote(
            "svc",
            RpcError::Remote(WireError::BadArguments(WireDecodeError::TooDeep)),
        );
        let mut chain = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        let why = WireDecodeError::TooDeep.to_string();
        assert!(
            chain.last().is_some_and(|last| last.ends_with(&why)),
            "{chain:?}"
        );
        assert!(chain.len() >= 3, "{chain:?}");
        for (i, part) in chain.iter().enumerate() {
            for later in chain.iter().skip(i + 1) {
                assert!(!part.contains(later.as_str()), "{chain:?}");
            }
        }
    }
}
