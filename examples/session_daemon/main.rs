//! A daemon that restarts under a client that stays: a session.
//!
//! ```text
//! cargo run --example session_daemon                    # restarts the daemon under a session
//! cargo run --example session_daemon -- serve NAME      # the daemon alone, until stdin closes
//! cargo run --example session_daemon -- serve-other NAME  # an incompatible daemon
//! ```
//!
//! The demo starts the daemon as a child, opens a session and a watch of the daemon's status,
//! then kills the daemon and starts it again, twice: the session's state goes to connecting and
//! back, the watch yields its gap marker and goes on with the new daemon's status. Last, an
//! incompatible daemon takes the name: the session fails with the reason.

#![allow(unreachable_pub)]

mod service;

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::session::SessionState;
use rpc_core::RpcError;
use service::{
    OtherSessionDaemon, OtherSessionDaemonServer, SessionDaemon, SessionDaemonClient,
    SessionDaemonServer, Status,
};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Daemon {
    jobs_done: Arc<AtomicU64>,
}

impl SessionDaemon for Daemon {
    async fn status(&self) -> Status {
        Status {
            pid: std::process::id(),
            jobs_done: self.jobs_done.load(Ordering::SeqCst),
            tick: 0,
        }
    }

    async fn run_job(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.jobs_done.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn watch(&self, every_ms: u64) -> rpc_core::Stream<Status> {
        let every = Duration::from_millis(every_ms.max(1));
        let jobs_done = Arc::clone(&self.jobs_done);
        rpc_core::Stream::new(futures_util::stream::unfold(
            (0, tokio::time::interval(every)),
            move |(tick, mut interval)| {
                let jobs_done = Arc::clone(&jobs_done);
                async move {
                    interval.tick().await;
                    let status = Status {
                        pid: std::process::id(),
                        jobs_done: jobs_done.load(Ordering::SeqCst),
                        tick,
                    };
                    Some((status, (tick + 1, interval)))
                }
            },
        ))
    }
}

struct Other;

impl OtherSessionDaemon for Other {
    async fn status(&self) -> String {
        format!("pid {}", std::process::id())
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => demo().await,
        ["serve", name] => {
            let daemon = Daemon {
                jobs_done: Arc::default(),
            };
            serve(rpc_transport::Server::bind(
                name,
                SessionDaemonServer::new(daemon),
            ))
            .await
        }
        ["serve-other", name] => {
            serve(rpc_transport::Server::bind(
                name,
                OtherSessionDaemonServer::new(Other),
            ))
            .await
        }
        _ => Err("usage: session_daemon [serve NAME | serve-other NAME]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until standard input closes; prints `ready` once bound.
async fn serve<D: rpc_core::Dispatch>(
    server: Result<rpc_transport::Server<D>, rpc_transport::BindError>,
) -> Result<(), Error> {
    let server = server?;
    let shutdown = server.shutdown_handle();
    // On a thread of its own: a read of stdin cannot be cancelled, and tokio's stdin would
    // keep the runtime from shutting down if the server stopped first (with an error).
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        shutdown.cancel();
    });
    println!("ready");
    server.run().await?;
    Ok(())
}

/// Starts `session_daemon MODE NAME` and waits until it is ready.
async fn start(mode: &str, name: &str) -> Result<tokio::process::Child, Error> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([mode, name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the daemon has no stdout")?;
    match BufReader::new(stdout).lines().next_line().await? {
        Some(line) if line == "ready" => Ok(child),
        other => Err(format!("the daemon did not start: {other:?}").into()),
    }
}

fn show(state: &SessionState) -> String {
    match state {
        SessionState::Connected { connections, .. } => {
            format!("connected (connection {connections})")
        }
        SessionState::Connecting { lost: None, .. } => "connecting".to_owned(),
        SessionState::Connecting { .. } => "reconnecting".to_owned(),
        SessionState::Failed { error, .. } => {
            // The error and each of its causes.
            let mut text = format!("failed: {error}");
            let mut cause = std::error::Error::source(error);
            while let Some(error) = cause {
                text.push_str(&format!(": {error}"));
                cause = error.source();
            }
            text
        }
        _ => format!("{state:?}"),
    }
}

async fn demo() -> Result<(), Error> {
    let name = format!("session-daemon-{}", std::process::id());
    let mut daemon = start("serve", &name).await?;
    let (client, session): (SessionDaemonClient, _) = rpc_transport::session::connect(&name)?;
    let mut states = session.watch();
    tokio::spawn(async move {
        // Each attempt changes the state; print only when what it shows changes.
        let mut shown = String::new();
        while states.changed().await.is_ok() {
            let now = show(&states.borrow_and_update());
            if now != shown {
                println!("session: {now}");
                shown = now;
            }
        }
    });
    let mut watch = client.watch(20).await?;
    for restart in 1..=2 {
        let first = watch.next().await.ok_or("the watch ended")??;
        println!("status from pid {} (tick {})", first.pid, first.tick);
        daemon.kill().await?;
        println!("daemon killed ({restart})");
        let hurried = client.with_timeout(Some(Duration::from_millis(300)));
        let outage = hurried.run_job(0).await;
        println!("a job during the outage: {outage:?}");
        daemon = start("serve", &name).await?;
        loop {
            match watch.next().await.ok_or("the watch ended")? {
                Err(RpcError::StreamReopened) => {
                    println!("watch: gap, reopened");
                    break;
                }
                Err(error) => return Err(error.into()),
                Ok(_) => {}
            }
        }
    }
    let status = watch.next().await.ok_or("the watch ended")??;
    println!("status from pid {} (tick {})", status.pid, status.tick);
    println!("jobs done by this daemon: {}", client.run_job(1).await?);

    daemon.kill().await?;
    let mut other = start("serve-other", &name).await?;
    match session.connected().await {
        Err(error) => println!(
            "an incompatible daemon: {error}; session {}",
            show(&session.state())
        ),
        Ok(()) => return Err("connected to an incompatible daemon".into()),
    }
    println!(
        "a call now: {:?}",
        client.status().await.map_err(|e| e.to_string())
    );
    // The last daemon stops cleanly (its standard input closes), and takes its socket and lock
    // file with it; the killed ones left theirs, which the next daemon of the name reclaimed.
    drop(other.stdin.take());
    other.wait().await?;
    Ok(())
}
