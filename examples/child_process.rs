//! A service in a child process, over the child's stdin and stdout.
//!
//! `cargo run --example child_process` starts this same program as a child (`child_process
//! child`), calls it, shows that a stray `println!` in the child cannot break the connection,
//! then kills a child in the middle of a call and shows the error, which carries its exit
//! status. The child's stderr is the parent's: its log lines appear in this terminal.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use rpc_core::ClientConfig;
use rpc_transport::child::{serve_stdio, spawn};

/// What the child serves.
#[rpc_core::service]
pub trait Worker {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Upper-cases `text`, printing it to stdout first, as careless code would.
    async fn shout(&self, text: String) -> String;
    /// Answers after `ms` milliseconds.
    async fn slow(&self, ms: u64) -> u64;
}

struct Work;

impl Worker for Work {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn shout(&self, text: String) -> String {
        // Lands on the child's stderr: serve_stdio took stdout for the connection.
        println!("child: asked to shout {text:?}");
        text.to_uppercase()
    }

    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("child") => {
            serve_stdio(WorkerServer::new(Work)).await?;
            eprintln!("child: parent closed the connection, exiting");
            Ok(())
        }
        None => parent().await,
        Some(other) => Err(format!("unknown argument {other:?}; run without one").into()),
    }
}

fn child_command() -> std::io::Result<tokio::process::Command> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.arg("child");
    Ok(command)
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ClientConfig::new();
    config.child_exit_grace(Duration::from_secs(2));

    let (worker, child): (WorkerClient, _) = spawn(child_command()?, &config).await?;
    println!("started child {}", child.id().unwrap_or_default());
    println!("add(2, 3)           = {}", worker.add(2, 3).await?);
    println!(
        "shout(\"hello\")      = {:?}",
        worker.shout("hello".into()).await?
    );

    let calls = (0..1000).map(|i| worker.add(i, i));
    let results = futures_util::future::join_all(calls).await;
    let total: i64 = results.into_iter().sum::<Result<i64, _>>()?;
    println!("1000 concurrent adds: total {total}");

    // Dropping the last client closes the child's stdin; it exits on its own.
    drop(worker);
    let status = child.wait().await;
    match status {
        Some(status) if status.success() => println!("client dropped: child exited cleanly"),
        Some(status) => println!("client dropped: child exited with {status}"),
        None => println!("client dropped: child exited with an unknown status"),
    }

    // A second child, killed while a call is in flight.
    let (worker, child): (WorkerClient, _) = spawn(child_command()?, &config).await?;
    let mut slow = std::pin::pin!(worker.slow(60_000));
    // Polled once, the slow call is sent ahead of the next one; the child reads calls in order,
    // so once it has answered the next one, the slow one is running.
    let polled = std::future::poll_fn(|cx| Poll::Ready(slow.as_mut().poll(cx))).await;
    if polled.is_ready() {
        return Err("slow(60000) finished at once".into());
    }
    worker.add(0, 0).await?;
    println!(
        "slow(60000) in flight; killing child {}",
        child.id().unwrap_or_default()
    );
    child.kill();
    match slow.await {
        Ok(ms) => println!("slow call finished after {ms} ms (unexpected)"),
        Err(error) => println!("slow call failed: {error}"),
    }
    match worker.add(1, 1).await {
        Ok(sum) => println!("add after the kill = {sum} (unexpected)"),
        Err(error) => println!("add after the kill failed: {error}"),
    }
    Ok(())
}
