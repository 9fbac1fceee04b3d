//! The call tests: latency, pipelined, many clients, bulk.

use super::*;

/// Latency over one connection, sequential calls; returns calls/s, p50 and p99 rows.
pub(super) async fn latency(
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
pub(super) async fn pipelined(options: &Options, dir: &Path) -> Result<Vec<Row>> {
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
pub(super) struct Window {
    pub(super) warm_until: Instant,
    pub(super) until: Instant,
    pub(super) warmup: u64,
    pub(super) calls: u64,
    pub(super) started: Option<Instant>,
    pub(super) ended: Option<Instant>,
}

impl Window {
    pub(super) fn new((warm_until, until): (Instant, Instant)) -> Self {
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
    pub(super) fn completed(&mut self) -> bool {
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

    pub(super) fn per_second(&self, what: &str, side: &str) -> f64 {
        self.rate(what, side, "completions")
    }

    /// Counted `things` per second.
    pub(super) fn rate(&self, what: &str, side: &str, things: &str) -> f64 {
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
pub(super) async fn pipelined_framework(options: &Options, dir: &Path) -> Result<f64> {
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
pub(super) async fn pipelined_raw(options: &Options, socket: &Path, echo: Echo) -> Result<f64> {
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
pub(super) async fn many(options: &Options, dir: &Path) -> Result<Row> {
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

pub(super) async fn many_run<C: RoundTrip>(
    options: &Options,
    conns: Vec<C>,
    side: &str,
) -> Result<f64> {
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
pub(super) async fn bulk(options: &Options, dir: &Path) -> Result<Row> {
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
