//! A child process for the child-process tests: `rpc-test-child <mode> [arg]`.
//!
//! * `stdio`: serves over stdin/stdout, exits 0 when the parent closes the connection.
//! * `exit-after MS`: serves over stdio, and exits with status 7 after MS milliseconds.
//! * `linger`: serves over stdio, then does not exit when the parent closes it.
//! * `returns`: serves over stdio with a handshake timeout of 200 ms, then returns from `main`
//!   however the connection ended (the runtime's shutdown waits for its blocking threads).
//! * `garbage`: writes text to stdout, then waits for stdin to close.
//! * `pipes`: serves over the pipes from `spawn_with_pipes`, writing a line to stdout as well.
//! * `callbacks`: serves `Relay`, which calls the parent back, over stdio.

#[path = "child_service.rs"]
mod child_service;

use std::io::{Read, Write};
use std::time::Duration;

use child_service::{HelperImpl, HelperServer, RelayImpl, RelayServer};
use rpc_core::ServerConfig;
use rpc_transport::child::{serve_inherited_pipes, serve_stdio, serve_stdio_with};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let service = HelperServer::new(HelperImpl);
    match mode {
        "stdio" => exit_with(serve_stdio(service).await),
        "exit-after" => {
            let ms = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
            tokio::select! {
                result = serve_stdio(service) => exit_with(result),
                () = tokio::time::sleep(Duration::from_millis(ms)) => std::process::exit(7),
            }
        }
        "returns" => {
            let mut config = ServerConfig::new();
            config.handshake_timeout(Duration::from_millis(200));
            if let Err(error) = serve_stdio_with(service, &config).await {
                eprintln!("rpc-test-child: {error}");
            }
        }
        "linger" => {
            let _ = serve_stdio(service).await;
            eprintln!("connection closed; lingering");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "garbage" => {
            println!("this program does not speak the protocol");
            let _ = std::io::stdout().flush();
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        "callbacks" => exit_with(serve_stdio(RelayServer::new(RelayImpl)).await),
        "pipes" => {
            println!("stdout is still mine");
            let _ = std::io::stdout().flush();
            exit_with(serve_inherited_pipes(service, &ServerConfig::default()).await);
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

fn exit_with<E: std::error::Error>(result: Result<(), E>) {
    if let Err(error) = result {
        eprintln!("rpc-test-child: {error}");
        std::process::exit(1);
    }
}
