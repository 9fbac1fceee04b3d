//! Benchmarks: the framework against a raw length-prefixed ping-pong over the same kind of Unix
//! socket, measured in the same process in the same run, so that the ratios mean something on a
//! noisy machine.
//!
//! ```text
//! cargo run --release --example bench               # every test, 2 s each after a warm-up
//! cargo run --release --example bench -- --short    # a smoke run: 0.2 s each
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
//! connection idle: the framework against itself, no raw side), `two-process` (the latency test
//! against servers in a second process) and `memory` (resident bytes per idle connection with
//! 1,000 open, each side measured in a fresh process that holds both ends). Options apply in
//! order, so `--measure-ms` goes after `--short`.
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
mod imp {
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

    const USAGE: &str = "usage: bench [--short] [--measure-ms MS] [--only TEST,...] \
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

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Test {
        Latency,
        Pipelined,
        Many,
        Bulk,
        Stream,
        Fairness,
        TwoProcess,
        Memory,
    }

    impl Test {
        const ALL: [Test; 8] = [
            Test::Latency,
            Test::Pipelined,
            Test::Many,
            Test::Bulk,
            Test::Stream,
            Test::Fairness,
            Test::TwoProcess,
            Test::Memory,
        ];

        fn parse(name: &str) -> Result<Self> {
            Ok(match name {
                "latency" => Test::Latency,
                "pipelined" => Test::Pipelined,
                "many" => Test::Many,
                "bulk" => Test::Bulk,
                "stream" => Test::Stream,
                "fairness" => Test::Fairness,
                "two-process" => Test::TwoProcess,
                "memory" => Test::Memory,
                _ => return Err(format!("unknown test {name:?}\n{USAGE}").into()),
            })
        }
    }

    struct Options {
        /// Time spent calling before measuring.
        warmup: Duration,
        /// Time measured.
        measure: Duration,
        tests: Vec<Test>,
        framework: bool,
        raw: bool,
        short: bool,
    }

    impl Options {
        fn parse(args: &[String]) -> Result<Self> {
            let mut options = Options {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(2),
                tests: Test::ALL.to_vec(),
                framework: true,
                raw: true,
                short: false,
            };
            let mut args = args.iter().map(String::as_str);
            while let Some(arg) = args.next() {
                match (arg, args.clone().next()) {
                    ("--short", _) => {
                        options.short = true;
                        options.warmup = Duration::from_millis(50);
                        options.measure = Duration::from_millis(200);
                    }
                    ("--measure-ms", Some(ms)) => {
                        args.next();
                        options.measure = Duration::from_millis(ms.parse()?);
                    }
                    ("--only", Some(list)) => {
                        args.next();
                        options.tests = list.split(',').map(Test::parse).collect::<Result<_>>()?;
                    }
                    ("--side", Some(side)) => {
                        args.next();
                        (options.framework, options.raw) = match side {
                            "framework" => (true, false),
                            "raw" => (false, true),
                            "both" => (true, true),
                            _ => return Err(format!("unknown side {side:?}\n{USAGE}").into()),
                        };
                    }
                    ("--help" | "-h", _) => return Err(USAGE.into()),
                    _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}").into()),
                }
            }
            Ok(options)
        }

        fn runs(&self, test: Test) -> bool {
            self.tests.contains(&test)
        }
    }

    // ---------------------------------------------------------------------------------------
    // The servers.

    /// The framework server, the raw echo servers and the raw stream server, bound in a private
    /// directory.
    struct Servers {
        dir: PathBuf,
        shutdown: rpc_core::CancellationToken,
        framework: tokio::task::JoinHandle<std::io::Result<()>>,
        raw: [tokio::task::JoinHandle<()>; 3],
    }

    impl Servers {
        fn start(dir: &Path, max_connections: usize) -> Result<Self> {
            let server = Server::bind_with(
                &endpoint(dir)?,
                BenchServer::new(BenchImpl),
                ServerConfig::new().max_connections(max_connections),
            )?;
            let shutdown = server.shutdown_handle();
            let framework = tokio::spawn(server.run());
            let listener = UnixListener::bind(dir.join(RAW_SOCKET))?;
            let batched = UnixListener::bind(dir.join(RAW_BATCHED_SOCKET))?;
            let streams = UnixListener::bind(dir.join(RAW_STREAM_SOCKET))?;
            let raw = [
                tokio::spawn(raw_server(listener, Echo::OneWriteEach, None)),
                tokio::spawn(raw_server(batched, Echo::Coalesced, None)),
                tokio::spawn(raw_stream_server(streams)),
            ];
            Ok(Self {
                dir: dir.to_owned(),
                shutdown,
                framework,
                raw,
            })
        }

        async fn stop(self) -> Result<()> {
            self.shutdown.cancel();
            self.framework.await??;
            for raw in self.raw {
                raw.abort();
            }
            Ok(())
        }
    }

    fn endpoint(dir: &Path) -> Result<Endpoint> {
        Ok(Endpoint::new(NAME)?.in_dir(dir))
    }

    async fn connect(dir: &Path) -> Result<BenchClient> {
        Ok(rpc_transport::connect_with(&endpoint(dir)?, &ClientConfig::default()).await?)
    }

    /// A directory of the benchmark's own, closed to other users, so that runs never collide.
    fn private_dir() -> Result<tempfile::TempDir> {
        use std::os::unix::fs::PermissionsExt;
        Ok(tempfile::Builder::new()
            .prefix("rpc-bench-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?)
    }

    /// How a raw server writes its echoes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Echo {
        /// One write per frame: what the brief calls the raw baseline.
        OneWriteEach,
        /// Every frame already read is echoed with one write.
        Coalesced,
    }

    /// Accepts raw connections and echoes every frame on each. With `accepted`, reports each
    /// connection once its task is ready to read.
    async fn raw_server(
        listener: UnixListener,
        echo: Echo,
        accepted: Option<mpsc::UnboundedSender<()>>,
    ) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let _ = raw_echo(stream, echo, accepted).await;
            });
        }
    }

    /// The payload length of the frame at the front of `buffered`, if all of it is there.
    fn buffered_frame(buffered: &[u8]) -> Option<usize> {
        let prefix: [u8; 4] = buffered.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(prefix) as usize;
        (buffered.len() >= 4 + len).then_some(len)
    }

    /// Reads one frame (prefix and payload) into `out` from `used` on; returns where it ends, or
    /// `None` at the end of the stream. `out` only grows, so a 1 MiB echo does not clear its
    /// buffer every message.
    async fn read_frame_into(
        reader: &mut BufReader<OwnedReadHalf>,
        out: &mut Vec<u8>,
        used: usize,
    ) -> std::io::Result<Option<usize>> {
        let mut prefix = [0u8; 4];
        match reader.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > 64 * MIB {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let end = used + 4 + len;
        if out.len() < end {
            out.resize(end, 0);
        }
        out[used..used + 4].copy_from_slice(&prefix);
        reader.read_exact(&mut out[used + 4..end]).await?;
        Ok(Some(end))
    }

    /// Echoes frames read through a buffered reader: each with a write of its own, or all
    /// those already read with one write.
    async fn raw_echo(
        stream: UnixStream,
        echo: Echo,
        accepted: Option<mpsc::UnboundedSender<()>>,
    ) -> std::io::Result<()> {
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        let mut out = Vec::new();
        if let Some(accepted) = accepted {
            let _ = accepted.send(());
        }
        while let Some(mut used) = read_frame_into(&mut reader, &mut out, 0).await? {
            if echo == Echo::Coalesced {
                while buffered_frame(reader.buffer()).is_some() {
                    match read_frame_into(&mut reader, &mut out, used).await? {
                        Some(end) => used = end,
                        None => break,
                    }
                }
            }
            writer.write_all(&out[..used]).await?;
        }
        Ok(())
    }

    /// Accepts raw connections and streams on each.
    async fn raw_stream_server(listener: UnixListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = raw_stream(stream).await;
            });
        }
    }

    /// Reads one frame, then writes copies of it until the client goes away: a small frame with
    /// as many others as fit in `RAW_STREAM_BATCH` bytes in one write, a large one on its own.
    async fn raw_stream(stream: UnixStream) -> std::io::Result<()> {
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        let mut first = Vec::new();
        let Some(end) = read_frame_into(&mut reader, &mut first, 0).await? else {
            return Ok(());
        };
        let frame = &first[..end];
        let per_write = (RAW_STREAM_BATCH / frame.len()).max(1);
        let mut batch = Vec::with_capacity(per_write * frame.len());
        loop {
            if per_write == 1 {
                writer.write_all(frame).await?;
            } else {
                batch.clear();
                for _ in 0..per_write {
                    batch.extend_from_slice(frame);
                }
                writer.write_all(&batch).await?;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Clients: one call or one raw round trip at a time.

    /// Something that makes one round trip at a time.
    trait RoundTrip: Send + 'static {
        fn round_trip(&mut self) -> impl Future<Output = Result<()>> + Send;
    }

    /// A raw connection sending frames of one size and reading the echoes.
    struct RawConn {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
        /// The frame sent: prefix and payload.
        frame: Vec<u8>,
        /// Where replies are read.
        reply: Vec<u8>,
        /// Frames sent with one write.
        batch: Vec<u8>,
    }

    impl RawConn {
        /// Connects to the raw server that writes each echo on its own.
        async fn connect(dir: &Path, payload: usize) -> Result<Self> {
            Self::connect_to(&dir.join(RAW_SOCKET), payload).await
        }

        async fn connect_to(path: &Path, payload: usize) -> Result<Self> {
            let stream = UnixStream::connect(path).await?;
            let (reader, writer) = stream.into_split();
            let len = u32::try_from(payload)?;
            let mut frame = len.to_le_bytes().to_vec();
            frame.extend((0..payload).map(|i| i as u8));
            Ok(Self {
                reader: BufReader::new(reader),
                writer,
                frame,
                reply: vec![0; payload],
                batch: Vec::new(),
            })
        }

        async fn send(&mut self) -> Result<()> {
            self.writer.write_all(&self.frame).await?;
            Ok(())
        }

        /// Sends `count` frames with one write.
        async fn send_many(&mut self, count: usize) -> Result<()> {
            self.batch.clear();
            for _ in 0..count {
                self.batch.extend_from_slice(&self.frame);
            }
            if !self.batch.is_empty() {
                self.writer.write_all(&self.batch).await?;
            }
            Ok(())
        }

        /// Receives a reply if one is already buffered, without reading from the socket.
        async fn receive_buffered(&mut self) -> Result<bool> {
            if buffered_frame(self.reader.buffer()).is_none() {
                return Ok(false);
            }
            self.receive().await?;
            Ok(true)
        }

        async fn receive(&mut self) -> Result<()> {
            let mut prefix = [0u8; 4];
            self.reader.read_exact(&mut prefix).await?;
            let len = u32::from_le_bytes(prefix) as usize;
            if len != self.reply.len() {
                return Err(
                    format!("raw echo of {len} bytes, expected {}", self.reply.len()).into(),
                );
            }
            self.reader.read_exact(&mut self.reply).await?;
            Ok(())
        }
    }

    impl RoundTrip for RawConn {
        async fn round_trip(&mut self) -> Result<()> {
            self.send().await?;
            self.receive().await
        }
    }

    /// Calls `add(1, 2)`.
    struct AddCall(BenchClient);

    impl RoundTrip for AddCall {
        async fn round_trip(&mut self) -> Result<()> {
            match self.0.add(1, 2).await? {
                3 => Ok(()),
                other => Err(format!("add(1, 2) returned {other}").into()),
            }
        }
    }

    /// Echoes a byte buffer through the service.
    struct EchoCall {
        client: BenchClient,
        data: ByteBuf,
    }

    impl RoundTrip for EchoCall {
        async fn round_trip(&mut self) -> Result<()> {
            let back = self.client.echo(self.data.clone()).await?;
            if back.len() == self.data.len() {
                Ok(())
            } else {
                Err(format!("echo returned {} of {} bytes", back.len(), self.data.len()).into())
            }
        }
    }

    /// Round trips counted over a measured time, with their durations if asked for.
    struct Sequential {
        warmup_calls: u64,
        calls: u64,
        elapsed: Duration,
        /// Round-trip times in nanoseconds, sorted.
        samples: Vec<u64>,
    }

    impl Sequential {
        fn per_second(&self) -> f64 {
            self.calls as f64 / self.elapsed.as_secs_f64()
        }

        /// The `q` quantile of the round-trip times, in microseconds.
        fn quantile_us(&self, q: f64) -> f64 {
            if self.samples.is_empty() {
                return f64::NAN;
            }
            let at = ((self.samples.len() - 1) as f64 * q).round() as usize;
            self.samples.get(at).copied().unwrap_or(0) as f64 / 1e3
        }
    }

    /// Makes round trips one after another: until `warm_until` unmeasured, then until `until`
    /// measured (timing each one if `record`).
    async fn sequential<C: RoundTrip>(
        conn: &mut C,
        warm_until: Instant,
        until: Instant,
        record: bool,
    ) -> Result<Sequential> {
        let mut warmup_calls = 0;
        while Instant::now() < warm_until {
            conn.round_trip().await?;
            warmup_calls += 1;
        }
        let mut samples = Vec::new();
        let mut calls = 0;
        let started = Instant::now();
        let mut now = started;
        while now < until {
            conn.round_trip().await?;
            calls += 1;
            let then = now;
            now = Instant::now();
            if record {
                samples.push(u64::try_from((now - then).as_nanos()).unwrap_or(u64::MAX));
            }
        }
        samples.sort_unstable();
        Ok(Sequential {
            warmup_calls,
            calls,
            elapsed: now - started,
            samples,
        })
    }

    impl Options {
        /// The warm-up and measurement deadlines of a test starting now.
        fn deadlines(&self) -> (Instant, Instant) {
            let warm_until = Instant::now() + self.warmup;
            (warm_until, warm_until + self.measure)
        }
    }

    // ---------------------------------------------------------------------------------------
    // The tests.

    /// One line of the result table.
    struct Row {
        test: &'static str,
        framework: Option<f64>,
        raw: Option<f64>,
        unit: Unit,
        /// The lowest acceptable framework/raw ratio, where the issue sets one.
        target: Option<f64>,
        /// What the `raw` figure is.
        baseline: Baseline,
    }

    /// What a row compares the framework with.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Baseline {
        /// The raw peer: `raw` is its figure.
        Raw,
        /// The framework itself on an idle connection: `framework` is the figure with the
        /// connection busy, `raw` the figure with it idle.
        Idle,
    }

    #[derive(Clone, Copy)]
    enum Unit {
        PerSecond,
        Micros,
        MibPerSecond,
        Bytes,
    }

    impl Unit {
        fn format(self, value: f64) -> String {
            match self {
                Unit::PerSecond => format!("{}/s", thousands(value)),
                Unit::Micros => format!("{value:.1} µs"),
                Unit::MibPerSecond => format!("{} MiB/s", thousands(value)),
                Unit::Bytes => format!("{} B", thousands(value)),
            }
        }
    }

    /// `value` rounded, with thousands separated by commas.
    fn thousands(value: f64) -> String {
        if !value.is_finite() {
            return "-".into();
        }
        let digits = format!("{:.0}", value.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if value < 0.0 {
            out.insert(0, '-');
        }
        out
    }

    fn report(what: &str, side: &str, run: &Sequential) {
        eprintln!(
            "  {what:<12} {side:<9} {} round trips in {:.2} s (after {} warm-up)",
            thousands(run.calls as f64),
            run.elapsed.as_secs_f64(),
            thousands(run.warmup_calls as f64)
        );
    }

    /// Latency over one connection, sequential calls; returns calls/s, p50 and p99 rows.
    async fn latency(
        options: &Options,
        label: &str,
        title: [&'static str; 3],
        target: f64,
        dir: &Path,
    ) -> Result<Vec<Row>> {
        let raw = if options.raw {
            let mut conn = RawConn::connect(dir, RAW_SMALL).await?;
            let (warm, until) = options.deadlines();
            let run = sequential(&mut conn, warm, until, true).await?;
            report(label, "raw", &run);
            Some(run)
        } else {
            None
        };
        let framework = if options.framework {
            let mut conn = AddCall(connect(dir).await?);
            let (warm, until) = options.deadlines();
            let run = sequential(&mut conn, warm, until, true).await?;
            report(label, "framework", &run);
            Some(run)
        } else {
            None
        };
        let row = |test, unit, target, f: &dyn Fn(&Sequential) -> f64| Row {
            test,
            framework: framework.as_ref().map(f),
            raw: raw.as_ref().map(f),
            unit,
            target,
            baseline: Baseline::Raw,
        };
        Ok(vec![
            row(title[0], Unit::PerSecond, Some(target), &|r| r.per_second()),
            row(title[1], Unit::Micros, None, &|r| r.quantile_us(0.5)),
            row(title[2], Unit::Micros, None, &|r| r.quantile_us(0.99)),
        ])
    }

    /// Calls completed per second with `WINDOW` calls in flight on one connection.
    /// Against both raw baselines: one write per frame, and coalesced writes.
    async fn pipelined(options: &Options, dir: &Path) -> Result<Vec<Row>> {
        let (raw, batched) = if options.raw {
            (
                Some(pipelined_raw(options, &dir.join(RAW_SOCKET), Echo::OneWriteEach).await?),
                Some(pipelined_raw(options, &dir.join(RAW_BATCHED_SOCKET), Echo::Coalesced).await?),
            )
        } else {
            (None, None)
        };
        let framework = if options.framework {
            Some(pipelined_framework(options, dir).await?)
        } else {
            None
        };
        Ok(vec![
            Row {
                test: "pipelined calls/s, 64 in flight",
                framework,
                raw,
                unit: Unit::PerSecond,
                target: None,
                baseline: Baseline::Raw,
            },
            Row {
                test: "  same, raw with coalesced writes",
                framework,
                raw: batched,
                unit: Unit::PerSecond,
                target: Some(0.3),
                baseline: Baseline::Raw,
            },
        ])
    }

    /// Counts completions: unmeasured until `warm_until`, measured until `until`.
    struct Window {
        warm_until: Instant,
        until: Instant,
        warmup: u64,
        calls: u64,
        started: Option<Instant>,
        ended: Option<Instant>,
    }

    impl Window {
        fn new((warm_until, until): (Instant, Instant)) -> Self {
            Self {
                warm_until,
                until,
                warmup: 0,
                calls: 0,
                started: None,
                ended: None,
            }
        }

        /// Counts one completion; returns whether to start another.
        fn completed(&mut self) -> bool {
            if self.ended.is_some() {
                return false;
            }
            let now = Instant::now();
            match self.started {
                None if now < self.warm_until => self.warmup += 1,
                None => self.started = Some(now),
                Some(_) if now < self.until => self.calls += 1,
                Some(_) => self.ended = Some(now),
            }
            self.ended.is_none()
        }

        fn per_second(&self, what: &str, side: &str) -> f64 {
            self.rate(what, side, "completions")
        }

        /// Counted `things` per second.
        fn rate(&self, what: &str, side: &str, things: &str) -> f64 {
            let elapsed = match (self.started, self.ended) {
                (Some(started), Some(ended)) => ended - started,
                _ => Duration::ZERO,
            };
            eprintln!(
                "  {what:<12} {side:<9} {} {things} in {:.2} s (after {} warm-up)",
                thousands(self.calls as f64),
                elapsed.as_secs_f64(),
                thousands(self.warmup as f64)
            );
            self.calls as f64 / elapsed.as_secs_f64()
        }
    }

    /// The framework with a sliding window: each completed call is replaced by a new one.
    async fn pipelined_framework(options: &Options, dir: &Path) -> Result<f64> {
        let client = connect(dir).await?;
        let mut window = Window::new(options.deadlines());
        let mut in_flight = FuturesUnordered::new();
        for _ in 0..WINDOW {
            in_flight.push(client.add(1, 2));
        }
        while let Some(result) = in_flight.next().await {
            if result? != 3 {
                return Err("add(1, 2) returned a wrong sum".into());
            }
            if window.completed() {
                in_flight.push(client.add(1, 2));
            }
        }
        Ok(window.per_second("pipelined", "framework"))
    }

    /// Raw frames with a sliding window: `WINDOW` frames written, then one more written for
    /// each echo read; with `Echo::Coalesced`, the frames replacing all the echoes already
    /// buffered go out with one write (and the server coalesces its echoes too).
    async fn pipelined_raw(options: &Options, socket: &Path, echo: Echo) -> Result<f64> {
        let mut conn = RawConn::connect_to(socket, RAW_SMALL).await?;
        let mut window = Window::new(options.deadlines());
        match echo {
            Echo::OneWriteEach => {
                for _ in 0..WINDOW {
                    conn.send().await?;
                }
            }
            Echo::Coalesced => conn.send_many(WINDOW).await?,
        }
        let mut outstanding = WINDOW;
        while outstanding > 0 {
            conn.receive().await?;
            outstanding -= 1;
            let mut more = usize::from(window.completed());
            match echo {
                Echo::OneWriteEach => {
                    if more > 0 {
                        conn.send().await?;
                    }
                }
                Echo::Coalesced => {
                    while conn.receive_buffered().await? {
                        outstanding -= 1;
                        more += usize::from(window.completed());
                    }
                    conn.send_many(more).await?;
                }
            }
            outstanding += more;
        }
        let side = match echo {
            Echo::OneWriteEach => "raw",
            Echo::Coalesced => "raw batch",
        };
        Ok(window.per_second("pipelined", side))
    }

    /// Total calls per second of `CLIENTS` connections, each calling sequentially.
    async fn many(options: &Options, dir: &Path) -> Result<Row> {
        let raw = if options.raw {
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                conns.push(RawConn::connect(dir, RAW_SMALL).await?);
            }
            Some(many_run(options, conns, "raw").await?)
        } else {
            None
        };
        let framework = if options.framework {
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                conns.push(AddCall(connect(dir).await?));
            }
            Some(many_run(options, conns, "framework").await?)
        } else {
            None
        };
        Ok(Row {
            test: "many clients calls/s, 32 connections",
            framework,
            raw,
            unit: Unit::PerSecond,
            target: Some(0.9),
            baseline: Baseline::Raw,
        })
    }

    async fn many_run<C: RoundTrip>(options: &Options, conns: Vec<C>, side: &str) -> Result<f64> {
        let (warm, until) = options.deadlines();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                tokio::spawn(async move { sequential(&mut conn, warm, until, false).await })
            })
            .collect();
        let (mut total, mut calls, mut warmup) = (0.0, 0, 0);
        for task in tasks {
            let run = task.await??;
            total += run.per_second();
            calls += run.calls;
            warmup += run.warmup_calls;
        }
        eprintln!(
            "  {:<12} {side:<9} {} round trips on {CLIENTS} connections in {:.2} s (after {} warm-up)",
            "many",
            thousands(calls as f64),
            options.measure.as_secs_f64(),
            thousands(warmup as f64)
        );
        Ok(total)
    }

    /// MiB/s one way, echoing a 1 MiB buffer.
    async fn bulk(options: &Options, dir: &Path) -> Result<Row> {
        // Each round trip carries 1 MiB each way.
        let mib_per_second = Sequential::per_second;
        let raw = if options.raw {
            let mut conn = RawConn::connect(dir, MIB).await?;
            let (warm, until) = options.deadlines();
            let run = sequential(&mut conn, warm, until, false).await?;
            report("bulk", "raw", &run);
            Some(mib_per_second(&run))
        } else {
            None
        };
        let framework = if options.framework {
            let data = ByteBuf::from(pattern(MIB));
            let mut conn = EchoCall {
                client: connect(dir).await?,
                data,
            };
            let (warm, until) = options.deadlines();
            let run = sequential(&mut conn, warm, until, false).await?;
            report("bulk", "framework", &run);
            Some(mib_per_second(&run))
        } else {
            None
        };
        Ok(Row {
            test: "bulk MiB/s one way, 1 MiB echo",
            framework,
            raw,
            unit: Unit::MibPerSecond,
            target: Some(0.85),
            baseline: Baseline::Raw,
        })
    }

    /// Items per second of an endless stream taken as fast as it comes, for small items and for
    /// 1 MiB items (whose items/s are MiB/s), each beside the raw stream server.
    async fn stream(options: &Options, dir: &Path) -> Result<Vec<Row>> {
        let cases = [
            (
                STREAM_SMALL,
                "stream 64 B",
                "stream items/s, 64 B items",
                Unit::PerSecond,
                0.3,
            ),
            (
                MIB,
                "stream 1 MiB",
                "stream MiB/s, 1 MiB items",
                Unit::MibPerSecond,
                0.8,
            ),
        ];
        let mut rows = Vec::new();
        for (size, label, test, unit, target) in cases {
            if std::env::var("ONLY_SIZE").is_ok_and(|v| v != size.to_string()) {
                continue;
            }
            let raw = if options.raw {
                Some(stream_raw(options, dir, size, label).await?)
            } else {
                None
            };
            let framework = if options.framework {
                Some(stream_framework(options, dir, size, label).await?)
            } else {
                None
            };
            rows.push(Row {
                test,
                framework,
                raw,
                unit,
                target: Some(target),
                baseline: Baseline::Raw,
            });
        }
        Ok(rows)
    }

    /// Items of `size` bytes per second from the framework's `items` stream.
    async fn stream_framework(
        options: &Options,
        dir: &Path,
        size: usize,
        label: &str,
    ) -> Result<f64> {
        let client = connect(dir).await?;
        let mut items = client.items(u32::try_from(size)?).await?;
        let mut window = Window::new(options.deadlines());
        loop {
            let item = items.next().await.ok_or("the stream ended")??;
            if item.len() != size {
                return Err(format!("stream item of {} bytes, expected {size}", item.len()).into());
            }
            if !window.completed() {
                break;
            }
        }
        Ok(window.rate(label, "framework", "items"))
    }

    /// Frames of `size` bytes per second from the raw stream server, which answers the first
    /// frame sent with frames of the same size.
    async fn stream_raw(options: &Options, dir: &Path, size: usize, label: &str) -> Result<f64> {
        let mut conn = RawConn::connect_to(&dir.join(RAW_STREAM_SOCKET), size).await?;
        conn.send().await?;
        let mut window = Window::new(options.deadlines());
        loop {
            conn.receive().await?;
            if !window.completed() {
                break;
            }
        }
        Ok(window.rate(label, "raw", "items"))
    }

    /// The p99 of `add(1, 2)` on one connection while a stream of 1 MiB items runs on it, taken
    /// as fast as it comes, against the p99 on the same connection idle just before.
    async fn fairness(options: &Options, dir: &Path) -> Result<Row> {
        let (busy, idle) = if options.framework {
            let client = connect(dir).await?;
            let mut calls = AddCall(client.clone());
            let (warm, until) = options.deadlines();
            let idle = sequential(&mut calls, warm, until, true).await?;
            report_quantiles("fairness", "idle", &idle);

            let mut items = client.items(u32::try_from(MIB)?).await?;
            let (stop, mut stopped) = oneshot::channel::<()>();
            let started = Instant::now();
            let consumer = tokio::spawn(async move {
                let mut taken = 0u64;
                loop {
                    tokio::select! {
                        _ = &mut stopped => return Ok::<_, Error>(taken),
                        item = items.next() => {
                            let item = item.ok_or("the stream ended")??;
                            if item.len() != MIB {
                                return Err(format!("stream item of {} bytes", item.len()).into());
                            }
                            taken += 1;
                        }
                    }
                }
            });
            let (warm, until) = options.deadlines();
            let busy = sequential(&mut calls, warm, until, true).await;
            let _ = stop.send(());
            let taken = consumer.await??;
            let busy = busy?;
            report_quantiles("fairness", "busy", &busy);
            let elapsed = started.elapsed().as_secs_f64();
            eprintln!(
                "  {:<12} {:<9} {} MiB taken meanwhile in {elapsed:.2} s ({} MiB/s)",
                "fairness",
                "stream",
                thousands(taken as f64),
                thousands(taken as f64 / elapsed)
            );
            (Some(busy.quantile_us(0.99)), Some(idle.quantile_us(0.99)))
        } else {
            (None, None)
        };
        Ok(Row {
            test: "fairness add p99, 1 MiB stream beside",
            framework: busy,
            raw: idle,
            unit: Unit::Micros,
            target: None,
            baseline: Baseline::Idle,
        })
    }

    fn report_quantiles(what: &str, side: &str, run: &Sequential) {
        eprintln!(
            "  {what:<12} {side:<9} {} round trips in {:.2} s (after {} warm-up): \
             p50 {:.1} µs, p99 {:.1} µs",
            thousands(run.calls as f64),
            run.elapsed.as_secs_f64(),
            thousands(run.warmup_calls as f64),
            run.quantile_us(0.5),
            run.quantile_us(0.99)
        );
    }

    /// The latency test against servers in a second process: this program, started with
    /// `__serve`.
    async fn two_process(options: &Options) -> Result<Vec<Row>> {
        let dir = private_dir()?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("__serve")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("server child has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await? {
            Some(line) if line == "ready" => {}
            other => return Err(format!("server process did not start: {other:?}").into()),
        }
        let rows = latency(
            options,
            "two-process",
            [
                "two-process latency calls/s",
                "two-process latency p50",
                "two-process latency p99",
            ],
            0.8,
            dir.path(),
        )
        .await;
        // Closing its standard input stops the server.
        drop(child.stdin.take());
        let status = child.wait().await?;
        let rows = rows?;
        if !status.success() {
            return Err(format!("server process failed: {status}").into());
        }
        Ok(rows)
    }

    /// The `__serve DIR` half of the two-process test.
    async fn serve_child(dir: Option<PathBuf>) -> Result<()> {
        let dir = dir.ok_or("__serve needs a directory")?;
        let servers = Servers::start(&dir, 64)?;
        println!("ready");
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = String::new();
        while stdin.read_line(&mut line).await? > 0 {
            line.clear();
        }
        servers.stop().await
    }

    /// Resident bytes per idle connection, each side measured in a fresh process.
    async fn memory(options: &Options) -> Result<Row> {
        let count = IDLE_CONNECTIONS;
        let raw = if options.raw {
            Some(memory_in_child("raw", count).await?)
        } else {
            None
        };
        let framework = if options.framework {
            Some(memory_in_child("framework", count).await?)
        } else {
            None
        };
        Ok(Row {
            test: "memory per idle connection, 1,000 open",
            framework,
            raw,
            unit: Unit::Bytes,
            target: None,
            baseline: Baseline::Raw,
        })
    }

    async fn memory_in_child(side: &str, count: usize) -> Result<f64> {
        let output = tokio::process::Command::new(std::env::current_exe()?)
            .args(["__memory", side, &count.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await?;
        if !output.status.success() {
            return Err(format!("memory process ({side}) failed: {}", output.status).into());
        }
        let text = String::from_utf8(output.stdout)?;
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [connections, before, after] = fields[..] else {
            return Err(format!("memory process ({side}) printed {text:?}").into());
        };
        eprintln!(
            "  {:<12} {side:<9} {connections} connections: resident {} -> {} KiB",
            "memory",
            before / 1024,
            after / 1024
        );
        Ok(after.saturating_sub(before) as f64 / connections as f64)
    }

    /// The process's resident set, in bytes, from `/proc/self/statm`.
    fn resident_bytes() -> Result<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm")?;
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .ok_or("short /proc/self/statm")?
            .parse()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(pages * u64::try_from(page).unwrap_or(4096))
    }

    /// The `__memory SIDE COUNT` child: opens `COUNT` idle connections, client and server end
    /// both in this process, and prints `connections before after` (resident bytes). One
    /// connection is opened and closed first, so that what every connection needs once (the
    /// runtime's buffers, lazily built tables) is not counted.
    async fn memory_child(side: Option<String>, count: Option<String>) -> Result<()> {
        let side = side.ok_or("__memory needs a side")?;
        let count: usize = count.ok_or("__memory needs a count")?.parse()?;
        // Two descriptors a connection, and some to spare.
        let limit = usize::try_from(raise_nofile_limit()).unwrap_or(usize::MAX);
        let count = count.min(limit.saturating_sub(64) / 2);
        let dir = private_dir()?;
        let (before, after) = match side.as_str() {
            "framework" => {
                let server = Server::bind_with(
                    &endpoint(dir.path())?,
                    BenchServer::new(BenchImpl),
                    ServerConfig::new().max_connections(count + 16),
                )?;
                let shutdown = server.shutdown_handle();
                let task = tokio::spawn(server.run());
                let first = connect(dir.path()).await?;
                first.add(1, 2).await?;
                drop(first);
                let before = resident_bytes()?;
                let mut clients = Vec::with_capacity(count);
                for _ in 0..count {
                    let client = connect(dir.path()).await?;
                    clients.push(client);
                }
                // One call on the last connection: every earlier one has been served too.
                if let Some(last) = clients.last() {
                    last.add(1, 2).await?;
                }
                let after = resident_bytes()?;
                drop(clients);
                shutdown.cancel();
                task.await??;
                (before, after)
            }
            "raw" => {
                let path = dir.path().join(RAW_SOCKET);
                let listener = UnixListener::bind(&path)?;
                let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
                let server =
                    tokio::spawn(raw_server(listener, Echo::OneWriteEach, Some(accepted_tx)));
                let mut first = RawConn::connect(dir.path(), RAW_SMALL).await?;
                first.round_trip().await?;
                drop(first);
                accepted.recv().await.ok_or("raw server stopped")?;
                let before = resident_bytes()?;
                let mut streams = Vec::with_capacity(count);
                for _ in 0..count {
                    streams.push(UnixStream::connect(&path).await?);
                }
                for _ in 0..count {
                    accepted.recv().await.ok_or("raw server stopped")?;
                }
                let after = resident_bytes()?;
                drop(streams);
                server.abort();
                (before, after)
            }
            _ => return Err(format!("unknown side {side:?}").into()),
        };
        println!("{count} {before} {after}");
        Ok(())
    }

    // ---------------------------------------------------------------------------------------

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
        let mut rows = Vec::new();
        if options.runs(Test::Latency) {
            rows.extend(
                latency(
                    &options,
                    "latency",
                    ["latency calls/s", "latency p50", "latency p99"],
                    0.85,
                    &servers.dir,
                )
                .await?,
            );
        }
        if options.runs(Test::Pipelined) {
            rows.extend(pipelined(&options, &servers.dir).await?);
        }
        if options.runs(Test::Many) {
            rows.push(many(&options, &servers.dir).await?);
        }
        if options.runs(Test::Bulk) {
            rows.push(bulk(&options, &servers.dir).await?);
        }
        if options.runs(Test::Stream) {
            rows.extend(stream(&options, &servers.dir).await?);
        }
        if options.runs(Test::Fairness) {
            rows.push(fairness(&options, &servers.dir).await?);
        }
        servers.stop().await?;
        if options.runs(Test::TwoProcess) {
            rows.extend(two_process(&options).await?);
        }
        if options.runs(Test::Memory) {
            rows.push(memory(&options).await?);
        }
        print_table(&rows);
        eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    fn print_table(rows: &[Row]) {
        let cells: Vec<[String; 5]> = rows
            .iter()
            .map(|row| {
                let show = |v: Option<f64>, tag: &str| {
                    v.map_or_else(|| "-".into(), |v| format!("{}{tag}", row.unit.format(v)))
                };
                let ratio = match (row.framework, row.raw) {
                    (Some(f), Some(r)) if r > 0.0 => Some(f / r),
                    _ => None,
                };
                let target = match (row.target, ratio) {
                    (Some(t), Some(r)) => {
                        format!("≥ {t:.2} {}", if r >= t { "met" } else { "MISSED" })
                    }
                    (Some(t), None) => format!("≥ {t:.2}"),
                    (None, _) if row.baseline == Baseline::Idle => "none: busy/idle".into(),
                    (None, _) => "-".into(),
                };
                let (busy, idle) = match row.baseline {
                    Baseline::Raw => ("", ""),
                    Baseline::Idle => (" busy", " idle"),
                };
                [
                    row.test.to_owned(),
                    show(row.framework, busy),
                    show(row.raw, idle),
                    ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                    target,
                ]
            })
            .collect();
        let header = ["test", "framework", "raw", "ratio", "target"].map(str::to_owned);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 5]| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (cell, width))| {
                    let pad = width - cell.chars().count();
                    if i == 0 {
                        format!("{cell}{}", " ".repeat(pad))
                    } else {
                        format!("{}{cell}", " ".repeat(pad))
                    }
                })
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        println!();
        println!("{}", line(&header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &cells {
            println!("{}", line(row));
        }
        println!();
        println!(
            "ratio = framework / raw (for p50, p99 and memory, lower is better). Memory is the \
             growth of the resident set of one process holding both ends of every connection \
             (tasks, buffers, channels, heap), not the kernel's socket buffers. The fairness row \
             compares the framework with itself: the p99 of add(1, 2) while a stream of 1 MiB \
             items runs on the same connection (busy) and with the connection idle; its ratio is \
             busy / idle."
        );
    }
}
