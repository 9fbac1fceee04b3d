//! An installer daemon that asks its front end before it installs, and reports progress into
//! it: callbacks, the server calling the client on the connection the client opened.
//!
//! ```text
//! cargo run --example installer                 # starts the daemon as a child and drives it
//! cargo run --example installer -- serve NAME   # the daemon alone, until its stdin closes
//! ```
//!
//! The front end serves `Prompt`; the daemon serves `Installer`, declared with
//! `callbacks = Prompt`, and reaches the front end of each call through its `CallContext`.

use std::process::{ExitCode, Stdio};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Why a package was not installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InstallError {
    /// The user said no.
    Declined,
    /// The front end could not be reached.
    FrontEndGone(String),
}

/// What a front end (a GUI, a command line) serves to the installer.
#[rpc_core::service]
pub trait Prompt {
    /// Asks the user a yes/no question.
    async fn confirm(&self, question: String) -> bool;
    /// How far the installation is; one-way.
    #[rpc(oneway)]
    async fn progress(&self, package: String, done: u32, total: u32);
}

/// The installer daemon.
#[rpc_core::service(callbacks = Prompt)]
pub trait Installer {
    /// Installs `package` once the caller's front end confirms; answers with the files
    /// installed.
    async fn install(&self, package: String) -> Result<u32, InstallError>;
}

struct Daemon;

impl Installer for Daemon {
    async fn install(&self, package: String) -> Result<u32, InstallError> {
        let gone = |e: &dyn std::fmt::Display| InstallError::FrontEndGone(e.to_string());
        let context = rpc_core::CallContext::current()
            .ok_or(InstallError::FrontEndGone("not in a call".to_owned()))?;
        let front_end: PromptClient = context.callbacks().map_err(|e| gone(&e))?;
        let question = format!("install {package}?");
        if !front_end.confirm(question).await.map_err(|e| gone(&e))? {
            return Err(InstallError::Declined);
        }
        const FILES: u32 = 4;
        for done in 1..=FILES {
            // The work of one file.
            tokio::task::yield_now().await;
            front_end
                .progress(package.clone(), done, FILES)
                .await
                .map_err(|e| gone(&e))?;
        }
        Ok(FILES)
    }
}

/// The front end of the demo: says yes to everything but `toolbar`.
struct Console;

impl Prompt for Console {
    async fn confirm(&self, question: String) -> bool {
        let yes = !question.contains("toolbar");
        println!("{question} {}", if yes { "yes" } else { "no" });
        yes
    }

    async fn progress(&self, package: String, done: u32, total: u32) {
        println!("{package}: {done}/{total}");
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
        _ => Err("usage: installer [serve NAME]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the installer on `name` until its standard input closes.
async fn serve(name: &str) -> Result<(), Error> {
    let server = rpc_transport::Server::bind(name, InstallerServer::new(Daemon))?;
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

/// Starts the daemon as a child process and installs two packages through it.
async fn demo() -> Result<(), Error> {
    let name = format!("installer-{}", std::process::id());
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

    // The front end serves its prompt on the connection it opens.
    let installer: InstallerClient =
        rpc_transport::connect_with_callbacks(&name, PromptServer::new(Console)).await?;
    for package in ["editor", "toolbar"] {
        match installer.install(package.to_owned()).await? {
            Ok(files) => println!("installed {package}: {files} files"),
            Err(error) => println!("not installed {package}: {error:?}"),
        }
    }

    drop(installer);
    drop(child.stdin.take());
    let exit = child.wait().await?;
    if !exit.success() {
        return Err(format!("the daemon failed: {exit}").into());
    }
    println!("daemon exited cleanly");
    Ok(())
}
