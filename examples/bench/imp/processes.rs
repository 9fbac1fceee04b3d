//! The tests that need a second process: two-process latency and memory per idle connection.

use super::*;

/// The latency test against servers in a second process: this program, started with
/// `__serve`.
pub(super) async fn two_process(options: &Options) -> Result<Vec<Row>> {
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
pub(super) async fn serve_child(dir: Option<PathBuf>) -> Result<()> {
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
pub(super) async fn memory(options: &Options) -> Result<Row> {
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

pub(super) async fn memory_in_child(side: &str, count: usize) -> Result<f64> {
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
pub(super) fn resident_bytes() -> Result<u64> {
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
pub(super) async fn memory_child(side: Option<String>, count: Option<String>) -> Result<()> {
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
            let server = tokio::spawn(raw_server(listener, Echo::OneWriteEach, Some(accepted_tx)));
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
