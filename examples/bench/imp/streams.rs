//! The stream tests: throughput of small and large items, and fairness beside a stream.

use super::*;

/// Items per second of an endless stream taken as fast as it comes, for small items and for
/// 1 MiB items (whose items/s are MiB/s), each beside the raw stream server.
pub(super) async fn stream(options: &Options, dir: &Path) -> Result<Vec<Row>> {
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
pub(super) async fn stream_framework(
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
pub(super) async fn stream_raw(
    options: &Options,
    dir: &Path,
    size: usize,
    label: &str,
) -> Result<f64> {
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
/// as fast as it comes, against the p99 on the same connection idle just before; and, for
/// reference, while two tasks of the benchmark's own copy 1 MiB buffers between yields (as
/// long a stretch as taking a 1 MiB item), with no stream: what sharing the two cores costs.
pub(super) async fn fairness(options: &Options, dir: &Path) -> Result<Vec<Row>> {
    let (busy, cpu, idle) = if options.framework {
        let client = connect(dir).await?;
        let mut calls = AddCall(client.clone());
        let (warm, until) = options.deadlines();
        let idle = sequential(&mut calls, warm, until, true).await?;
        report_quantiles("fairness", "idle", &idle);
        let cpu = beside_copies(&mut calls, options).await?;
        report_quantiles("fairness", "copies", &cpu);

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
        let p99 = |q: &Sequential| Some(q.quantile_us(0.99));
        (p99(&busy), p99(&cpu), p99(&idle))
    } else {
        (None, None, None)
    };
    Ok(vec![
        Row {
            test: "fairness add p99, 1 MiB stream beside",
            framework: busy,
            raw: idle,
            unit: Unit::Micros,
            target: None,
            baseline: Baseline::Idle,
        },
        Row {
            test: "  same, 1 MiB copies beside, no stream",
            framework: cpu,
            raw: idle,
            unit: Unit::Micros,
            target: None,
            baseline: Baseline::Idle,
        },
    ])
}

/// The latencies of `calls` while two tasks copy a 1 MiB buffer and yield, again and again.
async fn beside_copies(calls: &mut AddCall, options: &Options) -> Result<Sequential> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let copiers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let source = pattern(MIB);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(source.clone());
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let (warm, until) = options.deadlines();
    let measured = sequential(calls, warm, until, true).await;
    stop.store(true, Ordering::Relaxed);
    for copier in copiers {
        copier.await?;
    }
    measured
}
