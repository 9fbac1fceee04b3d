//! A server that runs as a Windows service, and the same server on a console.
//!
//! ```text
//! windows_service console <endpoint>                 # serves until Ctrl-C, console close, shutdown
//! windows_service service <service-name> <endpoint>  # what the service manager starts
//! windows_service call <endpoint> <a> <b>            # calls a running server
//! ```
//!
//! Registered and run with the service manager (from an administrator's prompt):
//!
//! ```text
//! sc create rpc-calc binPath= "C:\path\to\windows_service.exe service rpc-calc calc-service"
//! sc start rpc-calc
//! windows_service call calc-service 2 3              # from any user's prompt
//! sc stop rpc-calc                                   # graceful: calls in flight finish
//! sc delete rpc-calc
//! ```
//!
//! As a service it runs as SYSTEM and lets every local user in
//! ([`EndpointExt::allow_other_users`](rpc_transport::windows::EndpointExt)): users' clients
//! trust it because the pipe's owner is SYSTEM. A stop or shutdown from the service manager
//! cancels the server's shutdown handle: the service reports a stop pending, stops accepting,
//! lets calls in flight finish, then reports itself stopped. A service that cannot serve (its
//! endpoint taken, say) reports itself stopped with the service-specific exit code 1.

/// The service served.
#[rpc_core::service]
pub trait Calc {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Who the caller is, as the server sees it.
    async fn peer(&self) -> String;
}

/// The implementation.
pub struct Calculator;

impl Calc for Calculator {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn peer(&self) -> String {
        rpc_core::CallContext::current()
            .map_or_else(|| "unknown".to_owned(), |c| c.peer().to_string())
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["console", endpoint] => console(endpoint),
        ["service", name, endpoint] => service::run(name, endpoint),
        ["call", endpoint, a, b] => call(endpoint, a, b),
        _ => Err(
            "usage: windows_service console <endpoint> | service <name> <endpoint> | \
                  call <endpoint> <a> <b>"
                .into(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves on a console until Ctrl-C, Ctrl-Break, the console closing, log-off or shutdown.
fn console(endpoint: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(rpc_transport::serve(endpoint, CalcServer::new(Calculator)))?;
    Ok(())
}

fn call(endpoint: &str, a: &str, b: &str) -> Result<(), Error> {
    let (a, b) = (a.parse()?, b.parse()?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let calc: CalcClient = rpc_transport::connect(endpoint).await?;
        println!("{}", calc.add(a, b).await?);
        println!("server sees {}", calc.peer().await?);
        Ok(())
    })
}

#[cfg(not(windows))]
mod service {
    /// Windows services exist on Windows only.
    pub(crate) fn run(_name: &str, _endpoint: &str) -> Result<(), super::Error> {
        Err("services are a Windows thing; use `console` here".into())
    }
}

#[cfg(windows)]
mod service {
    use std::ffi::OsString;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use rpc_core::ServerConfig;
    use rpc_transport::windows::EndpointExt;
    use rpc_transport::{Endpoint, Server};
    use tokio::sync::Notify;
    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus,
        ServiceType,
    };
    use windows_service::service_control_handler::{
        self, ServiceControlHandlerResult, ServiceStatusHandle,
    };
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{CalcServer, Calculator, Error};

    /// The service's name and endpoint, for the service's main, which the dispatcher calls on
    /// a thread of its own with no way to pass them.
    static SETTINGS: OnceLock<(String, String)> = OnceLock::new();

    define_windows_service!(ffi_service_main, service_main);

    /// Hands the process to the service manager until the service stops.
    pub(crate) fn run(name: &str, endpoint: &str) -> Result<(), Error> {
        let _ = SETTINGS.set((name.to_owned(), endpoint.to_owned()));
        service_dispatcher::start(name, ffi_service_main)?;
        Ok(())
    }

    fn service_main(_arguments: Vec<OsString>) {
        let Some((name, endpoint)) = SETTINGS.get() else {
            return;
        };
        if let Err(error) = serve(name, endpoint) {
            eprintln!("service {name}: {error}");
        }
    }

    fn status(
        state: ServiceState,
        accepted: ServiceControlAccept,
        exit_code: ServiceExitCode,
    ) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted,
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::from_secs(15),
            process_id: None,
        }
    }

    /// Reports to the service manager from the start, so that it hears why the service stopped
    /// whatever happens (a service that fails before its first report is error 1053, without a
    /// reason): start pending, running once bound, stop pending while calls in flight finish,
    /// then stopped, with exit code 1 of its own if it failed.
    fn serve(name: &str, endpoint: &str) -> Result<(), Error> {
        let stop = Arc::new(Notify::new());
        let stopper = Arc::clone(&stop);
        let handler = move |control| match control {
            // Stop and system shutdown: a graceful stop of the server.
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                stopper.notify_one();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let handle = service_control_handler::register(name, handler)?;
        let none = ServiceControlAccept::empty();
        handle.set_service_status(status(
            ServiceState::StartPending,
            none,
            ServiceExitCode::NO_ERROR,
        ))?;
        let served = bind_and_serve(handle, &stop, endpoint);
        let code = match served {
            Ok(()) => ServiceExitCode::NO_ERROR,
            Err(_) => ServiceExitCode::ServiceSpecific(1),
        };
        handle.set_service_status(status(ServiceState::Stopped, none, code))?;
        served
    }

    /// Binds, reports the service running, and serves until the service manager stops it.
    fn bind_and_serve(
        handle: ServiceStatusHandle,
        stop: &Notify,
        endpoint: &str,
    ) -> Result<(), Error> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let endpoint = Endpoint::new(endpoint)?.allow_other_users(true);
            let server = Server::bind_with(
                &endpoint,
                CalcServer::new(Calculator),
                &ServerConfig::default(),
            )?;
            let shutdown = server.shutdown_handle();
            let accepted = ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN;
            handle.set_service_status(status(
                ServiceState::Running,
                accepted,
                ServiceExitCode::NO_ERROR,
            ))?;
            let run = server.run();
            tokio::pin!(run);
            tokio::select! {
                served = &mut run => return Ok(served?),
                () = stop.notified() => {}
            }
            handle.set_service_status(status(
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                ServiceExitCode::NO_ERROR,
            ))?;
            shutdown.cancel();
            Ok(run.await?)
        })
    }
}
