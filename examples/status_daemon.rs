//! A daemon whose status a client watches live: a stream from the server.
//!
//! ```text
//! cargo run --example status_daemon                 # starts the daemon as a child and watches it
//! cargo run --example status_daemon -- serve NAME   # the daemon alone, until its stdin closes
//! ```
//!
//! The daemon runs jobs; every change of its status (jobs queued, jobs done, what it does now)
//! goes to every client watching. The demo opens a watch, starts jobs from a second client, and
//! prints each change as it arrives.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// What the daemon is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Jobs waiting.
    pub queued: u32,
    /// Jobs finished.
    pub done: u32,
    /// The job running now, if any.
    pub running: Option<String>,
}

/// The daemon's interface.
#[rpc_core::service]
pub trait Daemon {
    /// The status now.
    async fn status(&self) -> Status;
    /// The status now, then every change of it, until the client drops the stream.
    async fn watch(&self) -> rpc_core::Stream<Status>;
    /// Queues a job; answers once it is queued.
    async fn start(&self, job: String);
}

struct Jobs {
    status: watch::Sender<Status>,
    queue: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Jobs {
    fn new() -> Self {
        let (status, _) = watch::channel(Status::default());
        let (queue, mut jobs) = tokio::sync::mpsc::unbounded_channel::<String>();
        let worker = status.clone();
        tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                worker.send_modify(|s| {
                    s.queued -= 1;
                    s.running = Some(job);
                });
                // The work itself.
                tokio::time::sleep(Duration::from_millis(30)).await;
                worker.send_modify(|s| {
                    s.done += 1;
                    s.running = None;
                });
            }
        });
        Self { status, queue }
    }
}

impl Daemon for Jobs {
    async fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    async fn watch(&self) -> rpc_core::Stream<Status> {
        let changes = self.status.subscribe();
        // The current status first, then each change.
        rpc_core::Stream::new(futures_util::stream::unfold(
            (changes, true),
            |(mut changes, first)| async move {
                if !first && changes.changed().await.is_err() {
                    return None;
                }
                let status = changes.borrow_and_update().clone();
                Some((status, (changes, false)))
            },
        ))
    }

    async fn start(&self, job: String) {
        self.status.send_modify(|s| s.queued += 1);
        let _ = self.queue.send(job);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => demo().await,
        ["serve", name] => serve(name).await,
        _ => Err("usage: status_daemon [serve NAME]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the daemon on `name` until its standard input closes.
async fn serve(name: &str) -> Result<(), Error> {
    let server = rpc_transport::Server::bind(name, DaemonServer::new(Jobs::new()))?;
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = String::new();
        while stdin.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            line.clear();
        }
        shutdown.cancel();
    });
    println!("ready");
    server.run().await?;
    Ok(())
}

/// Starts the daemon as a child process, watches it, and gives it work.
async fn demo() -> Result<(), Error> {
    let name = format!("status-daemon-{}", std::process::id());
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the daemon has no stdout")?;
    match BufReader::new(stdout).lines().next_line().await? {
        Some(line) if line == "ready" => {}
        other => return Err(format!("the daemon did not start: {other:?}").into()),
    }

    // One client watches, another gives work: the watcher sees each change as it happens.
    let watcher: DaemonClient = rpc_transport::connect(&name).await?;
    let mut changes = watcher.watch().await?;
    let worker: DaemonClient = rpc_transport::connect(&name).await?;
    for job in ["backup", "index", "compress"] {
        worker.start(job.to_owned()).await?;
    }
    while let Some(status) = changes.next().await {
        let status = status?;
        match &status.running {
            Some(job) => println!(
                "queued {}, done {}, running {job}",
                status.queued, status.done
            ),
            None => println!("queued {}, done {}, idle", status.queued, status.done),
        }
        if status.done == 3 && status.running.is_none() {
            break;
        }
    }
    // Dropping the stream ends the daemon's side of it.
    drop(changes);
    println!("final status: {:?}", worker.status().await?);

    drop((watcher, worker));
    drop(child.stdin.take());
    let exit = child.wait().await?;
    if !exit.success() {
        return Err(format!("the daemon failed: {exit}").into());
    }
    println!("daemon exited cleanly");
    Ok(())
}
