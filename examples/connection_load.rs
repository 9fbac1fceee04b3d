//! What many connections cost: threads and resident memory of the server and the client, and
//! the latency of a call, with N connections open on one named endpoint.
//!
//! ```text
//! cargo run --release --example connection_load            # 200 connections
//! cargo run --release --example connection_load -- 50      # 50 connections
//! ```
//!
//! It starts a server child process (this program with `serve <name>`), reads its threads and
//! resident memory (through a call) and its own, opens the connections, makes calls one at a
//! time over all of them in turn, and reads both again. It prints one line per figure; run it
//! under Wine with the Windows build to measure the named-pipe transport.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The service measured: an echo, and the server's own figures.
#[rpc_core::service]
pub trait Load {
    /// Returns `x`.
    async fn echo(&self, x: u64) -> u64;
    /// The server process's threads and resident memory in bytes.
    async fn usage(&self) -> (u64, u64);
}

struct Echo;

impl Load for Echo {
    async fn echo(&self, x: u64) -> u64 {
        x
    }

    async fn usage(&self) -> (u64, u64) {
        usage::threads_and_rss()
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Calls made over every connection, one at a time, for the latency figures.
const ROUNDS: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("serve") => match args.get(1) {
            Some(name) => runtime.block_on(serve(name)),
            None => Err("usage: connection_load serve <name>".into()),
        },
        other => match other.map_or(Ok(200), str::parse::<usize>) {
            Ok(connections) => runtime.block_on(measure(connections)),
            Err(error) => Err(format!("connections: {error}").into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until standard input closes.
async fn serve(name: &str) -> Result<(), Error> {
    let mut config = rpc_core::ServerConfig::new();
    config.max_connections(1000).max_connections_per_user(1000);
    let server = rpc_transport::Server::bind_with(
        &rpc_transport::Endpoint::new(name)?,
        LoadServer::new(Echo),
        &config,
    )?;
    let shutdown = server.shutdown_handle();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        shutdown.cancel();
    });
    println!("ready");
    server.run().await?;
    Ok(())
}

async fn measure(connections: usize) -> Result<(), Error> {
    let name = format!("connection-load-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut ready)?;
    }
    if ready.trim() != "ready" {
        return Err(format!("server did not start: {ready:?}").into());
    }
    let mut config = rpc_core::ClientConfig::new();
    config.connect_timeout(Duration::from_secs(30));
    let endpoint = rpc_transport::Endpoint::new(&name)?;
    let first: LoadClient = rpc_transport::connect_with(&endpoint, &config).await?;
    let server_before = first.usage().await?;
    let client_before = usage::threads_and_rss();

    let started = Instant::now();
    let mut clients = vec![first];
    while clients.len() < connections {
        clients.push(rpc_transport::connect_with(&endpoint, &config).await?);
    }
    let connect_time = started.elapsed();
    let mut latencies = Vec::with_capacity(ROUNDS * clients.len());
    for round in 0..ROUNDS {
        for (i, client) in clients.iter().enumerate() {
            let x = (round * connections + i) as u64;
            let started = Instant::now();
            let got = client.echo(x).await?;
            latencies.push(started.elapsed());
            if got != x {
                return Err(format!("echo returned {got} for {x}").into());
            }
        }
    }
    latencies.sort();
    let server_after = clients.first().ok_or("no connection")?.usage().await?;
    let client_after = usage::threads_and_rss();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("connections: {connections} (opened in {connect_time:.2?})");
    println!(
        "server threads: {} -> {}; resident memory: {:.1} -> {:.1} MiB",
        server_before.0,
        server_after.0,
        mib(server_before.1),
        mib(server_after.1)
    );
    println!(
        "client threads: {} -> {}; resident memory: {:.1} -> {:.1} MiB",
        client_before.0,
        client_after.0,
        mib(client_before.1),
        mib(client_after.1)
    );
    println!(
        "call latency over {} calls: p50 {:.1?}, p99 {:.1?}",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    drop(clients);
    drop(child.stdin.take());
    child.wait()?;
    Ok(())
}

/// Threads and resident memory of this process.
#[cfg(unix)]
mod usage {
    /// (threads, resident bytes), from `/proc/self/status` (zeros where there is none).
    pub(crate) fn threads_and_rss() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("Threads:"), field("VmRSS:") * 1024)
    }
}

/// Threads and resident memory of this process.
#[cfg(windows)]
mod usage {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    /// (threads, working set bytes): the threads from a ToolHelp snapshot, the working set from
    /// the process's memory counters.
    pub(crate) fn threads_and_rss() -> (u64, u64) {
        let pid = std::process::id();
        let mut threads = 0;
        // SAFETY: a snapshot handle that is closed below, and a THREADENTRY32 whose size field
        // is set as the API requires.
        unsafe {
            let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
            if snapshot != INVALID_HANDLE_VALUE {
                let mut entry: THREADENTRY32 = std::mem::zeroed();
                entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
                let mut more = Thread32First(snapshot, &mut entry) != 0;
                while more {
                    if entry.th32OwnerProcessID == pid {
                        threads += 1;
                    }
                    more = Thread32Next(snapshot, &mut entry) != 0;
                }
                CloseHandle(snapshot);
            }
        }
        // SAFETY: the pseudo handle of this process and a counters struct of the size passed.
        let rss = unsafe {
            let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
            counters.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
            if K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, counters.cb) != 0 {
                counters.WorkingSetSize as u64
            } else {
                0
            }
        };
        (threads, rss)
    }
}
