//! The benchmark on Unix: the service it calls, its settings, and the run of every test.

mod calls;
mod clients;
mod options;
mod processes;
mod report;
mod servers;
mod streams;

use calls::*;
use clients::*;
use options::*;
use processes::*;
use report::*;
use servers::*;
use streams::*;

use std::error::Error as StdError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use rpc_core::ByteBuf;
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::unix::EndpointExt;
use rpc_transport::{Endpoint, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

type Error = Box<dyn StdError + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// What the benchmark calls: the smallest call there is, a byte buffer both ways, and a
/// stream of byte buffers.
#[rpc_core::service]
pub(crate) trait Bench {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Returns its argument.
    async fn echo(&self, data: ByteBuf) -> ByteBuf;
    /// Buffers of `size` bytes without end, until the client drops its receiver.
    async fn items(&self, size: u32) -> rpc_core::Stream<ByteBuf>;
}

struct BenchImpl;

impl Bench for BenchImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn echo(&self, data: ByteBuf) -> ByteBuf {
        data
    }

    async fn items(&self, size: u32) -> rpc_core::Stream<ByteBuf> {
        // One buffer, shared by every item: a clone does not copy.
        let item = ByteBuf::from(pattern(size as usize));
        rpc_core::Stream::new(futures_util::stream::repeat(item))
    }
}

/// `len` bytes that are not all the same.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// Payload of a raw small frame: with its prefix a 24-byte frame, a little more than the
/// framework's 14-byte call and 8-byte reply of `add(1, 2)`.
const RAW_SMALL: usize = 20;
/// The bulk test's buffer, and the large items of the stream and fairness tests.
const MIB: usize = 1024 * 1024;
/// The small items of the stream test.
const STREAM_SMALL: usize = 64;
/// Bytes of small frames the raw stream server puts in one write.
const RAW_STREAM_BATCH: usize = 64 * 1024;
/// Calls in flight in the pipelined test.
const WINDOW: usize = 64;
/// Connections of the many-clients test.
const CLIENTS: usize = 32;
/// Idle connections of the memory test.
const IDLE_CONNECTIONS: usize = 1000;
/// The framework's endpoint name inside the benchmark's private directory.
const NAME: &str = "bench";
/// The raw server's socket inside the same directory.
const RAW_SOCKET: &str = "raw.sock";
/// The socket of the raw server that coalesces its writes.
const RAW_BATCHED_SOCKET: &str = "raw-batched.sock";
/// The socket of the raw stream server.
const RAW_STREAM_SOCKET: &str = "raw-stream.sock";

const USAGE: &str = "usage: bench [--short] [--measure-ms MS] [--rounds N] [--only TEST,...] \
    [--side framework|raw|both]\n\
    tests: latency, pipelined, many, bulk, stream, fairness, two-process, memory";

pub(crate) fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("__serve") => run(serve_child(args.get(1).map(PathBuf::from))),
        Some("__memory") => run(memory_child(args.get(1).cloned(), args.get(2).cloned())),
        _ => Options::parse(&args).and_then(|options| run(bench(options))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs `future` as a task of a multi-thread runtime with a worker per core, after raising
/// the limit on open files (the memory test holds two descriptors per connection). As a
/// task, not on the thread that blocks on it: clients run on the workers, as in a server
/// application, and not on a thread of their own that every reply must wake.
fn run(future: impl Future<Output = Result<()>> + Send + 'static) -> Result<()> {
    raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(runtime.spawn(future))?
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; failing leaves the old limit in place.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}

async fn bench(options: Options) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "rpc benchmark: framework vs raw length-prefixed frames over Unix sockets; \
         {} worker threads, warm-up {} ms, {} ms per measurement{}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        options.warmup.as_millis(),
        options.measure.as_millis(),
        if options.short { " (short mode)" } else { "" }
    );
    let dir = private_dir()?;
    let servers = Servers::start(dir.path(), 256)?;
    // The in-process tests run in rounds, each side of a test right after the other: the
    // figures of a side are its mean over the rounds, so that a change in the machine's load
    // during the run weighs on both sides alike.
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        if options.rounds > 1 {
            eprintln!("round {round} of {}", options.rounds);
        }
        rounds.push(in_process_tests(&options, &servers.dir).await?);
    }
    let mut rows = combine(rounds);
    servers.stop().await?;
    if options.runs(Test::TwoProcess) {
        rows.extend(single(two_process(&options).await?));
    }
    if options.runs(Test::Memory) {
        rows.extend(single(vec![memory(&options).await?]));
    }
    print_table(&rows);
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One round of the tests that run against the servers of this process.
async fn in_process_tests(options: &Options, dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if options.runs(Test::Latency) {
        rows.extend(
            latency(
                options,
                "latency",
                ["latency calls/s", "latency p50", "latency p99"],
                0.85,
                dir,
            )
            .await?,
        );
    }
    if options.runs(Test::Pipelined) {
        rows.extend(pipelined(options, dir).await?);
    }
    if options.runs(Test::Many) {
        rows.push(many(options, dir).await?);
    }
    if options.runs(Test::Bulk) {
        rows.push(bulk(options, dir).await?);
    }
    if options.runs(Test::Stream) {
        rows.extend(stream(options, dir).await?);
    }
    if options.runs(Test::Fairness) {
        rows.extend(fairness(options, dir).await?);
    }
    Ok(rows)
}
