//! What the `rpc` command can fail with, and the exit code of each failure.

use serde_json::Value;

use crate::codec::CodecError;

/// The exit codes of `rpc`, as documented in the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what was asked.
    Success,
    /// 1: the method returned its application error, printed as JSON on stdout.
    ApplicationError,
    /// 2: the command line was wrong: unknown command or method, bad arguments.
    Usage,
    /// 3: the service could not be reached, the connection failed, or output could not be
    /// written.
    Connection,
    /// 4: the service answered with a framework error (a method it turned out not to have,
    /// arguments it could not decode, a reply that does not decode, ...) or the call's deadline
    /// passed.
    Remote,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::ApplicationError => 1,
            Exit::Usage => 2,
            Exit::Connection => 3,
            Exit::Remote => 4,
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An argument does not fit its type (the message names the argument, the type and the
    /// value).
    #[error(transparent)]
    BadArgument(Box<CodecError>),
    /// The number of arguments differs from the method's.
    #[error("{method} takes {expected} arguments ({signature}), got {given}")]
    ArgumentCount {
        /// The method.
        method: String,
        /// Its signature, to show what it takes.
        signature: String,
        /// How many it takes.
        expected: usize,
        /// How many were given.
        given: usize,
    },
    /// The service has no method of that name.
    #[error("{service} has no method `{method}`; its methods: {available}")]
    UnknownMethod {
        /// The service.
        service: String,
        /// The name given.
        method: String,
        /// The service's methods, comma-separated.
        available: String,
    },
    /// The command does not suit the method's kind (`call` on a stream, `watch` on a call).
    #[error("{method} is a {kind} method: use `rpc {command}`")]
    WrongCommand {
        /// The method.
        method: String,
        /// Its kind.
        kind: &'static str,
        /// The command that suits it.
        command: &'static str,
    },
    /// The method takes a stream of items from the client, which `rpc` cannot send.
    #[error("{method} takes a stream of items from its caller (its argument `{argument}`), which rpc cannot send")]
    TakesStream {
        /// The method.
        method: String,
        /// Its stream argument.
        argument: String,
    },
    /// The backend reaches no service ([`NotConnected`](crate::run::NotConnected), the
    /// commands' tests' backend).
    #[error("cannot reach {target}: this backend connects to no service")]
    NotConnected {
        /// What was to be reached: a service's name, or "services" for `rpc list`.
        target: String,
    },
    /// Connecting to the service, or the connection, failed.
    #[error("connection to {service} failed")]
    Connection {
        /// The service ("services" for `rpc list`, "the local runtime" if that failed).
        service: String,
        /// Why.
        #[source]
        source: ConnectionFailure,
    },
    /// The service answered with a framework error (or its deadline passed), or with what this
    /// build cannot read.
    #[error("the call to {service} failed")]
    Remote {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: RemoteFailure,
    },
    /// The reply does not decode as the type the service itself described.
    #[error("the reply of {method} does not match its described type")]
    BadReply {
        /// The method.
        method: String,
        /// Where decoding failed.
        #[source]
        source: Box<CodecError>,
    },
    /// The method returned its application error; the value is printed as JSON.
    #[error("the method returned an error: {0}")]
    Application(Value),
    /// Writing to stdout failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// Why a [`CliError::Connection`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// Connecting failed (or listing the services).
    #[error(transparent)]
    Connect(#[from] rpc_transport::ConnectError),
    /// The connection broke, or its server is shutting down.
    #[error(transparent)]
    Lost(rpc_core::RpcError),
    /// The command's runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why a [`CliError::Remote`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// The service answered with this framework error (its cause is the error's source).
    #[error(transparent)]
    Refused(rpc_core::RpcError),
    /// The service's description uses shapes this build of `rpc` cannot read.
    #[error("its description uses shapes this build cannot read")]
    UnreadableDescription,
    /// The method returned an application error although it declares none.
    #[error("{method} returned an error, but declares none")]
    UndeclaredError {
        /// The method.
        method: String,
    },
}

/// An error and each of its causes, on one line, separated by `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl CliError {
    /// The exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Application(_) => Exit::ApplicationError,
            CliError::BadArgument(_)
            | CliError::ArgumentCount { .. }
            | CliError::UnknownMethod { .. }
            | CliError::WrongCommand { .. }
            | CliError::TakesStream { .. } => Exit::Usage,
            CliError::NotConnected { .. } | CliError::Connection { .. } | CliError::Output(_) => {
                Exit::Connection
            }
            CliError::Remote { .. } | CliError::BadReply { .. } => Exit::Remote,
        }
    }
}
