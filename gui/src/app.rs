//! The window: the connection's state, the daemon's status, and buttons.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc;

use eframe::egui::{self, Color32, RichText};
use rpc_core::session::{Session, SessionState};

use crate::model::{self, Model};
use crate::service::SessionDaemonClient;

/// What the test asks of a window started with `--report`.
pub(crate) enum Command {
    /// Write a PNG of the window to this path.
    Screenshot(PathBuf),
    /// What the "Run a job" button does.
    RunJob,
    /// Close the window.
    Quit,
}

pub(crate) struct App {
    runtime: tokio::runtime::Runtime,
    client: SessionDaemonClient,
    session: Session,
    model: Model,
    report: bool,
    reported: String,
    commands: mpsc::Receiver<Command>,
    screenshot_to: Option<PathBuf>,
}

impl App {
    pub(crate) fn new(
        ctx: &egui::Context,
        runtime: tokio::runtime::Runtime,
        name: &str,
        report: bool,
    ) -> Result<Self, rpc_transport::ConnectError> {
        let (client, session): (SessionDaemonClient, Session) = {
            let _inside = runtime.enter();
            rpc_transport::session::connect(name)?
        };
        let model = Model::default();
        let repaint = {
            let ctx = ctx.clone();
            move || ctx.request_repaint()
        };
        runtime.spawn(model::watch_status(
            client.clone(),
            session.clone(),
            model.clone(),
            repaint.clone(),
        ));
        runtime.spawn(model::repaint_on_change(session.clone(), repaint));
        Ok(Self {
            runtime,
            client,
            session,
            model,
            report,
            reported: String::new(),
            commands: read_commands(ctx, report),
            screenshot_to: None,
        })
    }

    fn repaint(ctx: &egui::Context) -> impl Fn() + Send + 'static {
        let ctx = ctx.clone();
        move || ctx.request_repaint()
    }

    /// Runs a job of 200 ms on the daemon, in the background.
    fn run_job(&self, ctx: &egui::Context) {
        let task = model::run_job(
            self.client.clone(),
            self.model.clone(),
            200,
            Self::repaint(ctx),
        );
        self.runtime.spawn(task);
    }

    fn connection(&self, ui: &mut egui::Ui, state: &SessionState) {
        let (color, text) = match state {
            SessionState::Connected {
                since, connections, ..
            } => (
                Color32::from_rgb(40, 160, 70),
                format!(
                    "Connected (connection {connections}, for {:.0} s)",
                    since.elapsed().as_secs_f64()
                ),
            ),
            SessionState::Connecting {
                since,
                lost,
                attempts,
                last_error,
                ..
            } => {
                let what = if lost.is_some() {
                    "Reconnecting"
                } else {
                    "Connecting"
                };
                let error = last_error
                    .as_ref()
                    .map(|error| format!(": {}", model::chain(error)))
                    .unwrap_or_default();
                (
                    Color32::from_rgb(210, 140, 20),
                    format!(
                        "{what} for {:.1} s, {attempts} attempts{error}",
                        since.elapsed().as_secs_f64()
                    ),
                )
            }
            SessionState::Failed { error, .. } => (
                Color32::from_rgb(200, 40, 40),
                format!("Failed: {}", model::chain(error)),
            ),
            SessionState::Stopped { .. } => (Color32::GRAY, "Stopped".to_owned()),
            _ => (Color32::GRAY, format!("{state:?}")),
        };
        ui.label(RichText::new(text).color(color).strong());
    }

    fn handle_commands(&mut self, ctx: &egui::Context) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Screenshot(path) => {
                    self.screenshot_to = Some(path);
                    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                        egui::UserData::default(),
                    ));
                }
                Command::RunJob => self.run_job(ctx),
                Command::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            }
        }
        let shot = ctx.input(|input| {
            input.events.iter().find_map(|event| match event {
                egui::Event::Screenshot { image, .. } => Some(image.clone()),
                _ => None,
            })
        });
        if shot.is_none() && self.screenshot_to.is_some() {
            // The screenshot comes with a later frame: draw one.
            ctx.request_repaint();
        }
        let Some(image) = shot else {
            return;
        };
        if let Some(path) = self.screenshot_to.take() {
            match write_png(&path, &image) {
                Ok(()) => println!("screenshot saved {}", path.display()),
                Err(error) => println!("screenshot failed: {error}"),
            }
        }
    }

    /// With `--report`, prints what the window shows when it changes.
    fn report(&mut self, state: &SessionState) {
        if !self.report {
            return;
        }
        let shown = self.model.lock().clone();
        let status = shown
            .status
            .map(|s| format!("pid {} jobs {}", s.pid, s.jobs_done))
            .unwrap_or_else(|| "none".to_owned());
        let line = format!(
            "shown: connection {} | status {status} | gaps {} | last action {}",
            model::state_words(state),
            shown.gaps,
            shown.last_action.as_deref().unwrap_or("none")
        );
        if line != self.reported {
            println!("{line}");
            self.reported = line;
        }
    }
}

impl eframe::App for App {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Polled each frame: the test's commands arrive on another thread.
        self.handle_commands(ctx);
        if self.report {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
        let state = self.session.state();
        egui::CentralPanel::default().show(ctx, |ui| {
            ui.heading("Session daemon");
            self.connection(ui, &state);
            ui.separator();
            let shown = self.model.lock().clone();
            match &shown.status {
                Some(status) => {
                    ui.label(format!("Daemon: process {}", status.pid));
                    ui.label(format!("Jobs done: {}", status.jobs_done));
                    ui.label(format!("Watch: status {}", status.tick));
                }
                None => {
                    ui.label("No status yet");
                }
            }
            ui.label(format!("Gaps in the watch (refetched): {}", shown.gaps));
            ui.separator();
            ui.horizontal(|ui| {
                if ui.button("Run a job").clicked() {
                    self.run_job(ctx);
                }
                let failed = matches!(state, SessionState::Failed { .. });
                let connected = state.is_connected();
                if ui
                    .add_enabled(!connected, egui::Button::new("Retry now"))
                    .clicked()
                {
                    self.session.retry_now();
                }
                if failed {
                    // Why is in the state above: another service, protocol or set of callbacks.
                    ui.label("The daemon on this name is not one this window can talk to.");
                }
            });
            if let Some(action) = &shown.last_action {
                ui.label(action);
            }
        });
        self.report(&state);
    }
}

/// The commands on standard input, with `--report`; each wakes the window.
fn read_commands(ctx: &egui::Context, report: bool) -> mpsc::Receiver<Command> {
    let (commands_tx, commands) = mpsc::channel();
    if report {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let command = match line.trim().split_once(' ') {
                    Some(("screenshot", path)) => Command::Screenshot(path.into()),
                    _ if line.trim() == "quit" => Command::Quit,
                    _ if line.trim() == "run-job" => Command::RunJob,
                    _ => continue,
                };
                if commands_tx.send(command).is_err() {
                    break;
                }
                ctx.request_repaint();
            }
        });
    }
    commands
}

/// Writes a screenshot as an RGBA PNG.
fn write_png(
    path: &std::path::Path,
    image: &egui::ColorImage,
) -> Result<(), Box<dyn std::error::Error>> {
    let [width, height] = image.size;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, u32::try_from(width)?, u32::try_from(height)?);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
    writer.write_image_data(&bytes)?;
    writer.finish()?;
    Ok(())
}
