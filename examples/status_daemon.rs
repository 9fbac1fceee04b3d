//! A daemon whose status a client watches live while it uploads a file: a stream from the
//! server and a stream from the client on one connection each.
//!
//! ```text
//! cargo run --example status_daemon                 # starts the daemon as a child and watches it
//! cargo run --example status_daemon -- serve NAME   # the daemon alone, until its stdin closes
//! ```
//!
//! The daemon runs jobs and stores uploads; every change of its status (jobs queued, jobs done,
//! what it does now, bytes stored) goes to every client watching. The demo opens a watch,
//! starts jobs and uploads a file from a second client, and prints each change as it arrives.

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
    /// Bytes of uploads stored.
    pub stored: u64,
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
    /// Stores a file sent in chunks; answers with its size once the chunks end.
    async fn upload(&self, name: String, chunks: rpc_core::Stream<rpc_core::ByteBuf>) -> u64;
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

    async fn upload(&self, name: String, mut chunks: rpc_core::Stream<rpc_core::ByteBuf>) -> u64 {
        // The client sends a chunk only when this handler has room for it.
        let mut size = 0;
        while let Some(chunk) = chunks.next().await {
            size += chunk.len() as u64;
            self.status.send_modify(|s| s.stored += chunk.len() as u64);
        }
        tracing::debug!(name, size, "stored");
        size
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
    // A file of 1 MiB in chunks of 64 KiB, sent while the jobs run.
    let chunks =
        futures_util::stream::iter(0..16u8).map(|i| rpc_core::ByteBuf::from(vec![i; 64 * 1024]));
    let size = worker.upload("report.bin".to_owned(), chunks).await?;
    println!("uploaded report.bin: {size} bytes");
    while let Some(status) = changes.next().await {
        let status = status?;
        match &status.running {
            Some(job) => println!(
                "queued {}, done {}, running {job}",
                status.queued, status.done
            ),
            None => println!(
                "queued {}, done {}, idle, stored {}",
                status.queued, status.done, status.stored
            ),
        }
        if status.done == 3 && status.running.is_none() && status.stored == size {
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
