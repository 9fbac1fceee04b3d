//! A GUI front end for the session daemon (`examples/session_daemon`): the daemon's live status
//! through a watch, buttons that call it, and the connection's state. Killing the daemon shows
//! "reconnecting"; starting it again brings the window back, without restarting the window.
//!
//! ```text
//! cargo run --manifest-path gui/Cargo.toml --bin session_daemon -- serve my-daemon
//! cargo run --manifest-path gui/Cargo.toml --bin session_gui -- my-daemon
//! ```
//!
//! With `--report`, the window prints what it shows whenever that changes (`shown: ...`), and
//! takes commands on its standard input: `screenshot PATH` (writes a PNG of the window), `run-job`
//! (what the "Run a job" button does) and
//! `quit`. The test drives it that way.

#![allow(unreachable_pub)]

mod app;
mod model;
#[path = "../../examples/session_daemon/service.rs"]
#[allow(dead_code)]
mod service;

use std::process::ExitCode;

use app::App;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let report = args.iter().any(|arg| arg == "--report");
    let Some(name) = args.iter().find(|arg| !arg.starts_with("--")).cloned() else {
        eprintln!("usage: session_gui [--report] NAME");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([520.0, 300.0])
            .with_title("Session daemon"),
        ..Default::default()
    };
    let result = eframe::run_native(
        "session_gui",
        options,
        Box::new(move |cc| {
            let app = App::new(&cc.egui_ctx, runtime, &name, report)?;
            Ok(Box::new(app))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
