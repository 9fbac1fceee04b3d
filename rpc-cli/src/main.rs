//! The `rpc` command. What it does and its exit codes are documented in the `rpc_cli` library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rpc_cli::cli::Cli;
use rpc_cli::remote::Remote;
use rpc_cli::run::run;
use rpc_cli::{CliError, Exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(Exit::Usage.code()));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut remote = match Remote::new() {
        Ok(remote) => remote,
        Err(error) => return fail(&error),
    };
    match run(cli.command, &mut remote, &mut out) {
        Ok(()) => ExitCode::from(Exit::Success.code()),
        Err(CliError::Application(value)) => {
            // The error is the output: JSON on stdout, for scripts to read.
            let _ = writeln!(out, "{value:#}");
            ExitCode::from(Exit::ApplicationError.code())
        }
        Err(error) => fail(&error),
    }
}

/// Prints `error` and each of its causes on one line to stderr; its exit code.
fn fail(error: &CliError) -> ExitCode {
    let message = format!("rpc: {}", rpc_cli::error::chain(error));
    // Not `eprintln!`, which panics when stderr is gone (`rpc watch x 2>&1 | head -1`).
    let _ = writeln!(std::io::stderr().lock(), "{message}");
    ExitCode::from(error.exit().code())
}
