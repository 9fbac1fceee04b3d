//! The client's side: opening a pipe (retrying while every instance is busy) and checking who
//! owns it before anything is sent.

use std::io;
use std::time::{Duration, Instant};

use rpc_core::ClientConfig;
use tokio::net::windows::named_pipe::NamedPipeClient;
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY};

use super::frames::{duplex, PipeReader, PipeWriter};
use super::pipe::{self, Pipe};
use super::pipe_path;
use super::security::{own_user_sid, owner_sid, trusted_owner, CLIENT_ACCESS};
use crate::endpoint::Endpoint;
use crate::error::{ConnectError, User};

/// How long a client waits between attempts while every instance is busy.
const BUSY_RETRY: Duration = Duration::from_millis(10);

/// Connects to `endpoint`'s pipe and checks its owner.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(PipeReader, PipeWriter), ConnectError> {
    let path = pipe_path(endpoint);
    let give_up = Instant::now() + config.get_connect_timeout();
    let client = open_with_retry(&path, CLIENT_ACCESS, give_up).await?;
    check_owner(&client, &path)?;
    Ok(duplex(Pipe::Client(client)))
}

/// Opens a client end of the pipe at `path`, retrying while every instance is busy until
/// `give_up`; maps the ways it fails to [`ConnectError`]s.
pub(super) async fn open_with_retry(
    path: &str,
    access: u32,
    give_up: Instant,
) -> Result<NamedPipeClient, ConnectError> {
    let shown = || path.to_owned();
    loop {
        match pipe::open(path, access) {
            Ok(pipe) => return Ok(pipe),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                if Instant::now() >= give_up {
                    return Err(ConnectError::Busy { endpoint: shown() });
                }
                // Every instance is taken; the server creates the next one as soon as it hands
                // one off (a pair's one instance frees when its client leaves). No event says
                // so to a client: poll briefly, within the bounded wait.
                tokio::time::sleep(BUSY_RETRY).await;
            }
            // No instance of the pipe exists at all: no server (a server that is running always
            // keeps an instance, busy ones included, so this is not a busy server).
            Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => {
                return Err(ConnectError::NotFound { endpoint: shown() })
            }
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                return Err(ConnectError::PermissionDenied { endpoint: shown() })
            }
            Err(e) => {
                return Err(ConnectError::Io {
                    endpoint: shown(),
                    source: e.into(),
                })
            }
        }
    }
}

/// Checks, before anything is sent, that the pipe is owned by this process's user or SYSTEM.
pub(super) fn check_owner(pipe: &NamedPipeClient, endpoint: &str) -> Result<(), ConnectError> {
    let io_err = |e: io::Error| ConnectError::Io {
        endpoint: endpoint.to_owned(),
        source: e.into(),
    };
    let own = own_user_sid().map_err(io_err)?;
    let owner = owner_sid(Pipe::client_handle(pipe)).map_err(io_err)?;
    if !trusted_owner(&owner, &own) {
        return Err(ConnectError::UntrustedServer {
            endpoint: endpoint.to_owned(),
            expected: User::Sid(own),
            actual: User::Sid(owner),
        });
    }
    Ok(())
}
