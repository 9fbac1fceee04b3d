//! Benchmarks: the framework against a raw length-prefixed ping-pong over the same kind of Unix
//! socket, measured in the same process in the same run, so that the ratios mean something on a
//! noisy machine.
//!
//! ```text
//! cargo run --release --example bench               # every test, 3 rounds of 2 s each
//! cargo run --release --example bench -- --short    # a smoke run: one round of 0.2 s each
//! cargo run --release --example bench -- --only latency,pipelined --side framework --measure-ms 500
//! ```
//!
//! The raw baseline is what an application would write by hand without a framework: a 4-byte
//! little-endian length before each message, read through a buffered reader, one write per
//! message, a tokio task per connection on the server. The pipelined test also runs against a
//! second raw server that coalesces: it echoes every frame already read with one write, and its
//! client sends the frames that replace all the echoes already read with one write. The stream
//! test's raw server answers a first frame with frames of the same size without end, coalesced:
//! as many as fit in 64 KiB go out with each write (a 1 MiB frame with a write of its own); its
//! client reads and parses them through a buffered reader. The framework serves the `Bench`
//! service below with its default settings (including the 30 s deadline every call carries, and
//! a stream window of 1 MiB). Everything runs as tasks of one multi-thread tokio runtime with
//! a worker per core.
//!
//! Tests: `latency` (one connection, sequential `add(1, 2)`: calls/s, p50, p99), `pipelined` (one
//! connection, 64 calls in flight, each completed call replaced by a new one), `many` (32
//! connections, each sequential), `bulk` (echo of a 1 MiB [`rpc_core::ByteBuf`], MiB/s one way),
//! `stream` (one connection, an endless stream of 64-byte [`rpc_core::ByteBuf`] items and then
//! one of 1 MiB items, each taken as fast as it comes: items/s and MiB/s), `fairness` (the p99 of
//! `add(1, 2)` on a connection that carries a stream of 1 MiB items, against the p99 on the same
//! connection idle: the framework against itself, no raw side; and the same beside two tasks
//! that copy 1 MiB buffers between yields, with no stream), `two-process` (the latency test
//! against servers in a second process) and `memory` (resident bytes per idle connection with
//! 1,000 open, each side measured in a fresh process that holds both ends). Options apply in
//! order, so `--measure-ms` and `--rounds` go after `--short`. The tests against the servers of
//! this process run in rounds (`--rounds N`, default 3), the raw side of each test right before
//! the framework's; each side's figure is its mean over the rounds, and the table shows the ratio
//! of each round.
//!
//! Two hidden subcommands are the other halves of the tests that need a second process:
//! `__serve DIR` serves the framework and the raw servers in `DIR`, prints `ready` and runs until
//! its standard input closes; `__memory framework|raw COUNT` opens `COUNT` idle connections (both
//! ends in that one process) and prints how many, and its resident bytes before and after.

use std::process::ExitCode;

#[cfg(unix)]
fn main() -> ExitCode {
    imp::main()
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("the benchmark measures Unix domain sockets; it does not run on this platform");
    ExitCode::SUCCESS
}

#[cfg(unix)]
mod imp;
