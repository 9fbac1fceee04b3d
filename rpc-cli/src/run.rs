//! The commands, over whatever reaches the services.
//!
//! The commands are written against [`Backend`]: listing services, fetching a [`Describe`],
//! making a call and following a stream, with arguments and results as postcard bytes. The
//! command-line tool's backend connects to the services (`remote`); [`NotConnected`], which
//! refuses everything, serves the commands' tests.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{CallArgs, Command, WatchArgs};
use crate::codec::{self, argument_formats, argument_path, word_to_json};
use crate::describe::{render, Describe, MethodKind, MethodSchema};
use crate::error::{CliError, RemoteFailure};

/// A service that `rpc list` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The name it is served under.
    pub name: String,
    /// Its interface (the service trait's name).
    pub interface: String,
}

/// What a call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The result, in postcard.
    Ok(Vec<u8>),
    /// The method's application error, in postcard.
    Err(Vec<u8>),
}

/// What the commands need from the services; each method fails with a [`CliError`] whose
/// [exit code](CliError::exit) says what went wrong.
pub trait Backend {
    /// The services this user can reach.
    ///
    /// # Errors
    ///
    /// When they cannot be enumerated.
    fn list(&mut self) -> Result<Vec<ServiceEntry>, CliError>;

    /// The description of the service served as `name`.
    ///
    /// # Errors
    ///
    /// When the service cannot be reached or does not describe itself.
    fn describe(&mut self, name: &str) -> Result<Describe, CliError>;

    /// Calls `method` of the service served as `name` with `args` (postcard, a tuple of the
    /// arguments); a one-way method's reply is `Reply::Ok` of nothing.
    ///
    /// # Errors
    ///
    /// When the service cannot be reached, the call times out, or the service refuses it.
    fn call(
        &mut self,
        name: &str,
        method: &MethodSchema,
        args: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Reply, CliError>;

    /// Calls the streaming `method` and hands each item (postcard) to `item` until the stream
    /// ends, `item` fails, or the user interrupts.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), and whatever `item` returns.
    fn watch(
        &mut self,
        name: &str,
        method: &MethodSchema,
        args: Vec<u8>,
        item: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError>;
}

/// A backend that reaches no service, and says so: for tests of what the commands do before
/// they reach one.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotConnected;

impl NotConnected {
    fn refuse<T>(target: &str) -> Result<T, CliError> {
        Err(CliError::NotConnected {
            target: target.to_owned(),
        })
    }
}

impl Backend for NotConnected {
    fn list(&mut self) -> Result<Vec<ServiceEntry>, CliError> {
        Self::refuse("services")
    }

    fn describe(&mut self, name: &str) -> Result<Describe, CliError> {
        Self::refuse(name)
    }

    fn call(
        &mut self,
        name: &str,
        _: &MethodSchema,
        _: Vec<u8>,
        _: Option<Duration>,
    ) -> Result<Reply, CliError> {
        Self::refuse(name)
    }

    fn watch(
        &mut self,
        name: &str,
        _: &MethodSchema,
        _: Vec<u8>,
        _: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        Self::refuse(name)
    }
}

/// Runs one command, writing what it prints to `out`.
///
/// # Errors
///
/// Any [`CliError`]; [`CliError::Application`] carries the method's error as JSON, which the
/// caller prints.
pub fn run(
    command: Command,
    backend: &mut dyn Backend,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::List => {
            let services = backend.list()?;
            let width = services
                .iter()
                .map(|s| s.name.chars().count())
                .max()
                .unwrap_or(0);
            for service in services {
                writeln!(out, "{:width$}   {}", service.name, service.interface)
                    .map_err(CliError::Output)?;
            }
        }
        Command::Describe { name, json } => {
            let describe = backend.describe(&name)?;
            let text = if json {
                serde_json::to_string_pretty(&describe).map_err(|e| CliError::Output(e.into()))?
                    + "\n"
            } else {
                render(&describe)
            };
            out.write_all(text.as_bytes()).map_err(CliError::Output)?;
        }
        Command::Call(CallArgs {
            name,
            method,
            args,
            timeout,
            json,
        }) => {
            let describe = backend.describe(&name)?;
            let method = find_method(&describe, &method, MethodKind::Call)?;
            let bytes = encode_words(&describe, method, &args, json)?;
            match backend.call(&name, method, bytes, timeout)? {
                Reply::Ok(_) if method.kind == MethodKind::Oneway => {}
                Reply::Ok(bytes) => {
                    let value = decode_reply(&describe, method, &bytes, &method.result_format)?;
                    print_json(out, &value, true)?;
                }
                Reply::Err(bytes) => {
                    let format = method
                        .error_format
                        .as_ref()
                        .ok_or_else(|| CliError::Remote {
                            service: name.clone(),
                            source: RemoteFailure::UndeclaredError {
                                method: method.name.clone(),
                            },
                        })?;
                    let value = decode_reply(&describe, method, &bytes, format)?;
                    return Err(CliError::Application(value));
                }
            }
        }
        Command::Watch(WatchArgs {
            name,
            method,
            args,
            json,
        }) => {
            let describe = backend.describe(&name)?;
            let method = find_method(&describe, &method, MethodKind::Stream)?;
            let bytes = encode_words(&describe, method, &args, json)?;
            backend.watch(&name, method, bytes, &mut |item| {
                let value = decode_reply(&describe, method, item, &method.result_format)?;
                print_json(out, &value, false)
            })?;
        }
    }
    Ok(())
}

/// The method `name`, which `rpc call` (`wanted` = call; one-way methods too) or `rpc watch`
/// (`wanted` = stream) can call.
fn find_method<'d>(
    describe: &'d Describe,
    name: &str,
    wanted: MethodKind,
) -> Result<&'d MethodSchema, CliError> {
    let method = describe
        .method(name)
        .ok_or_else(|| CliError::UnknownMethod {
            service: describe.service.clone(),
            method: name.to_owned(),
            available: describe.method_names(),
        })?;
    if let Some(argument) = &method.upload {
        return Err(CliError::TakesStream {
            method: method.name.clone(),
            argument: argument.clone(),
        });
    }
    match (method.kind, wanted) {
        (MethodKind::Stream, MethodKind::Stream)
        | (MethodKind::Call | MethodKind::Oneway, MethodKind::Call) => Ok(method),
        (MethodKind::Stream, _) => Err(CliError::WrongCommand {
            method: method.name.clone(),
            kind: "stream",
            command: "watch",
        }),
        (kind, _) => Err(CliError::WrongCommand {
            method: method.name.clone(),
            kind: if kind == MethodKind::Oneway {
                "one-way"
            } else {
                "call"
            },
            command: "call",
        }),
    }
}

/// Turns the command-line words into the postcard arguments of `method`: each word is read
/// as its argument's type wants ([`word_to_json`]), or as JSON with `--json`.
///
/// # Errors
///
/// [`CliError::ArgumentCount`] for the wrong number of words, [`CliError::BadArgument`] naming
/// the argument, its type and the word for a word that does not fit.
pub fn encode_words(
    describe: &Describe,
    method: &MethodSchema,
    words: &[String],
    json: bool,
) -> Result<Vec<u8>, CliError> {
    let formats = argument_formats(&method.args_format);
    if words.len() != formats.len() {
        return Err(CliError::ArgumentCount {
            method: method.name.clone(),
            signature: method.signature(),
            expected: formats.len(),
            given: words.len(),
        });
    }
    let names: Vec<&str> = method.args.iter().map(|(name, _)| name.as_str()).collect();
    let registry = &describe.registry;
    let values = words
        .iter()
        .zip(formats)
        .enumerate()
        .map(|(i, (word, format))| {
            let path = argument_path(&names, i);
            if json {
                codec::parse_json(word, format, &path)
            } else {
                word_to_json(word, format, registry, &path)
            }
        })
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| CliError::BadArgument(Box::new(e)))?;
    codec::encode_args(&values, &names, &method.args_format, registry)
        .map_err(|e| CliError::BadArgument(Box::new(e)))
}

fn decode_reply(
    describe: &Describe,
    method: &MethodSchema,
    bytes: &[u8],
    format: &serde_reflection::Format,
) -> Result<Value, CliError> {
    codec::decode(bytes, format, &describe.registry, "reply").map_err(|source| CliError::BadReply {
        method: method.name.clone(),
        source: Box::new(source),
    })
}

/// Prints a value as JSON: indented for a call's result, one line for a stream's items.
fn print_json(out: &mut dyn Write, value: &Value, pretty: bool) -> Result<(), CliError> {
    let written = if pretty {
        serde_json::to_writer_pretty(&mut *out, value)
    } else {
        serde_json::to_writer(&mut *out, value)
    };
    written.map_err(|e| CliError::Output(e.into()))?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

#[cfg(test)]
mod tests;
