//! The calculator demo: a service trait, a server process and a client.
//!
//! ```text
//! cargo run --example calculator                  # starts a server child process and drives it
//! cargo run --example calculator -- serve         # serves "calculator" until Ctrl-C
//! cargo run --example calculator -- call add 2 3  # calls a running server
//! ```

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;

/// A calculator, served over a local named pipe.
#[rpc_core::service]
pub trait Calculator {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides `a` by `b`; dividing by zero is a typed error.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Writes a line to the server's log. One-way: no reply, the client does not wait.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// The lines logged so far.
    async fn logged(&self) -> Vec<String>;
}

/// The calculator's own error, typed end to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalcError {
    /// The divisor was zero.
    DivisionByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalcError::DivisionByZero => f.write_str("division by zero"),
        }
    }
}

#[derive(Default)]
struct Calc {
    lines: Mutex<Vec<String>>,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        if b == 0.0 {
            Err(CalcError::DivisionByZero)
        } else {
            Ok(a / b)
        }
    }

    async fn log(&self, line: String) {
        let peer = rpc_core::CallContext::current()
            .map_or_else(|| "an unknown peer".to_owned(), |c| c.peer().to_string());
        eprintln!("[server] log from {peer}: {line}");
        self.lines.lock().await.push(line);
    }

    async fn logged(&self) -> Vec<String> {
        self.lines.lock().await.clone()
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => demo().await,
        ["serve"] => serve("calculator", false).await,
        ["serve", "--name", name] => serve(name, false).await,
        ["serve", "--name", name, "--until-stdin-closes"] => serve(name, true).await,
        ["call", "--name", name, rest @ ..] => call(name, rest).await,
        ["call", rest @ ..] => call("calculator", rest).await,
        _ => Err(USAGE.into()),
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

const USAGE: &str = "usage: calculator [serve [--name NAME] | call [--name NAME] (add A B | divide A B | log TEXT)]";

/// Serves the calculator on `name`. With `until_stdin_closes`, the server shuts down gracefully
/// when its standard input closes (the demo's parent holds it), else on Ctrl-C.
async fn serve(name: &str, until_stdin_closes: bool) -> Result<(), Error> {
    let server = rpc_transport::Server::bind(name, CalculatorServer::new(Calc::default()))?;
    eprintln!("[server] serving {name} at {}", server.address());
    if !until_stdin_closes {
        let shutdown = server.shutdown_handle();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        });
        println!("ready");
        return Ok(server.run().await?);
    }
    let shutdown = server.shutdown_handle();
    // On a thread of its own: a read of stdin cannot be cancelled, and tokio's stdin would
    // keep the runtime from shutting down if the server stopped first (with an error).
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        shutdown.cancel();
    });
    // Tell the parent we are ready: it waits for this line instead of guessing.
    println!("ready");
    server.run().await?;
    eprintln!("[server] shut down");
    Ok(())
}

/// One call from the command line against the server on `name`.
async fn call(name: &str, args: &[&str]) -> Result<(), Error> {
    let calc: CalculatorClient = rpc_transport::connect(name).await?;
    match args {
        ["add", a, b] => println!("{}", calc.add(a.parse()?, b.parse()?).await?),
        ["divide", a, b] => match calc.divide(a.parse()?, b.parse()?).await? {
            Ok(q) => println!("{q}"),
            Err(e) => println!("error: {e}"),
        },
        ["log", text @ ..] => {
            calc.log(text.join(" ")).await?;
            // One-way calls are not answered. `log` finishes at once (it waits for nothing), so
            // it has run before the server reads the next call: that call sees its line.
            println!("logged; server has {} lines", calc.logged().await?.len());
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

/// Starts a server child process and drives it over the real socket.
async fn demo() -> Result<(), Error> {
    let name = format!("calculator-demo-{}", std::process::id());
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--name", &name, "--until-stdin-closes"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut ready = BufReader::new(stdout).lines();
    match ready.next_line().await? {
        Some(line) if line == "ready" => {}
        other => return Err(format!("server did not start: {other:?}").into()),
    }

    let calc: CalculatorClient = rpc_transport::connect(&name).await?;
    let pid = child
        .id()
        .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string());
    println!("connected to {name} (server pid {pid})");

    println!("add(2, 3)           = {}", calc.add(2, 3).await?);
    println!("divide(7.0, 2.0)    = {:?}", calc.divide(7.0, 2.0).await?);
    println!(
        "divide(1.0, 0.0)    = {:?}   (typed error)",
        calc.divide(1.0, 0.0).await?
    );
    // A handle with its own deadline for each call, on the same connection.
    let hurried = calc.with_timeout(Some(Duration::from_millis(500)));
    println!("add(40, 2) within 500 ms = {}", hurried.add(40, 2).await?);
    calc.log("hello from the client".to_owned()).await?;
    println!(
        "log(\"hello ...\")     sent one-way; server has logged {:?}",
        calc.logged().await?
    );

    let started = Instant::now();
    let calls = (0..1000i64).map(|i| {
        let calc = calc.clone();
        async move { calc.add(i, i).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut total = 0i64;
    for result in results {
        total += result?;
    }
    println!(
        "1000 concurrent add(i, i) calls: total = {total} (expected {}), in {:.1} ms",
        999 * 1000,
        started.elapsed().as_secs_f64() * 1e3
    );

    drop(calc);
    drop(child.stdin.take());
    let status = child.wait().await?;
    if status.success() {
        println!("server exited cleanly");
    } else {
        println!("server exited: {status}");
    }
    Ok(())
}
