#![forbid(unsafe_code)]
//! `rpc`: list, describe and call any service of the pipe RPC framework from a shell, with no
//! generated code.
//!
//! ```text
//! rpc list                                   services this user can reach, with their interface
//!                                            (or "busy" for one at its limit of connections)
//! rpc describe NAME [--json]                 a service's methods and types
//! rpc call NAME METHOD [ARGS...] [--timeout SECS] [--json]
//!                                            call a method, print its result as JSON
//! rpc watch NAME METHOD [ARGS...] [--json]   follow a streaming method, one JSON line per item
//! ```
//!
//! Arguments are one word each. A word for a number type is read as a number (`-5`, `2.5`),
//! one for a `String` is taken as it is (`hello`), and any other type takes JSON
//! (`'{"x": 1, "y": 2}'`, `true`, `null`, `'[1, 2]'`); `--json` reads every word as JSON. A
//! word that does not fit is refused with its argument's name, the type expected and the word:
//! `a: expected i64, got "two"`, `n: 300 is out of range for u8 (0 to 255)`. Numbers are never
//! wrapped or truncated. How each type looks in JSON is in [`codec`].
//!
//! The commands reach services through [`remote::Remote`]: it connects by name without
//! knowing the service, asks the server to describe itself, and calls its methods with the
//! arguments encoded from that description; `rpc watch` follows a stream method until it ends
//! or Ctrl-C.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the method returned its application error, printed as JSON on stdout |
//! | 2 | usage or bad input: unknown command or method, wrong number of arguments, an argument that does not fit its type |
//! | 3 | connection, transport or output error: the service cannot be reached, the connection broke, stdout closed |
//! | 4 | remote framework error: the service refused the call or its deadline passed, or its reply does not match its own description |
//!
//! Other messages go to stderr, prefixed `rpc: `.

pub mod cli;
pub mod codec;
pub mod describe;
pub mod error;
pub mod remote;
pub mod run;

#[cfg(test)]
mod fixture;

pub use error::{CliError, ConnectionFailure, Exit, RemoteFailure};
