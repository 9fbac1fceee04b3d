//! The command line, as clap parses it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Lists, describes and calls services of the pipe RPC framework on this machine.
#[derive(Debug, Parser)]
#[command(name = "rpc", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `rpc`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the services this user can reach on this machine, with their interface (a service
    /// at its limit of connections is listed as busy).
    List,
    /// Show a service's methods and types.
    Describe {
        /// The service's name.
        name: String,
        /// Print the description as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Call a method and print its result as JSON.
    #[command(allow_negative_numbers = true)]
    Call(CallArgs),
    /// Call a streaming method and print each item as one line of JSON until it ends or Ctrl-C.
    #[command(allow_negative_numbers = true)]
    Watch(WatchArgs),
}

/// `rpc call NAME METHOD [ARGS...] [--timeout SECS] [--json]`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The service's name.
    pub name: String,
    /// The method to call.
    pub method: String,
    /// The arguments, one word each: numbers and strings as they are, anything else as JSON.
    /// Negative numbers may be given as they are; put `--` before a word starting with `-`.
    pub args: Vec<String>,
    /// How long to wait for the reply, in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
    /// Read every argument as JSON, strings included (`'"text"'`).
    #[arg(long)]
    pub json: bool,
}

/// `rpc watch NAME METHOD [ARGS...]`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The service's name.
    pub name: String,
    /// The streaming method to call.
    pub method: String,
    /// The arguments, as for `rpc call`.
    pub args: Vec<String>,
    /// Read every argument as JSON, strings included.
    #[arg(long)]
    pub json: bool,
}

/// Reads a timeout: a non-negative, finite number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {text:?}"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("expected a non-negative number of seconds, got {text:?}"))
}
