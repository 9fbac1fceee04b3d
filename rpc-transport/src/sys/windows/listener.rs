//! The accept loop of a named endpoint: always one instance waiting.

use std::io;

use rpc_core::{PeerInfo, ServerConfig};
use tokio::net::windows::named_pipe::NamedPipeServer;
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_NO_DATA};

use super::frames::{duplex, PipeReader, PipeWriter};
use super::pipe::{self, client_process_id, duplex_options, Pipe};
use super::pipe_path;
use super::security::{own_user_sid, pipe_sddl, process_user_sid, SecurityDescriptor};
use crate::endpoint::Endpoint;
use crate::error::BindError;

/// A named-pipe server that always has one instance waiting for a client.
#[derive(Debug)]
pub(crate) struct Listener {
    path: String,
    descriptor: SecurityDescriptor,
    /// The instance waiting for the next client; `None` only after creating it failed.
    waiting: Option<NamedPipeServer>,
}

impl Listener {
    /// Creates the first instance of `endpoint`'s pipe; fails if the name is taken.
    pub(crate) fn bind(endpoint: &Endpoint, _config: &ServerConfig) -> Result<Self, BindError> {
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };
        let path = pipe_path(endpoint);
        let owner = own_user_sid().map_err(io_err)?;
        let descriptor =
            SecurityDescriptor::from_sddl(&pipe_sddl(&owner, endpoint.other_users_allowed()))
                .map_err(io_err)?;
        let first = match pipe::create(&duplex_options(true), &path, &descriptor) {
            Ok(pipe) => pipe,
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                return Err(BindError::AddrInUse { name })
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(Self {
            path,
            descriptor,
            waiting: Some(first),
        })
    }

    /// The pipe's path.
    pub(crate) fn address(&self) -> String {
        self.path.clone()
    }

    /// Waits for the next client. Cancel-safe: a client that connects meanwhile is kept for the
    /// next call (the connect stays in flight on the waiting instance).
    pub(crate) async fn accept(&mut self) -> io::Result<(PipeReader, PipeWriter, PeerInfo)> {
        let waiting = match self.waiting.take() {
            Some(waiting) => waiting,
            None => pipe::create(&duplex_options(false), &self.path, &self.descriptor)?,
        };
        let waiting = self.waiting.insert(waiting);
        loop {
            match waiting.connect().await {
                Ok(()) => break,
                // A client came and went before we saw it: the instance is left closing.
                // Disconnect it so that it listens again, and wait for the next client.
                Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => waiting.disconnect()?,
                Err(e) => return Err(e),
            }
        }
        // Create the next instance before handing this one off: one is always waiting. If that
        // fails, the connected instance stays here and is handed off by the next accept.
        let next = pipe::create(&duplex_options(false), &self.path, &self.descriptor)?;
        let Some(connected) = self.waiting.replace(next) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let pid = client_process_id(&connected);
        let sid = pid.and_then(|pid| process_user_sid(pid).ok());
        let (reader, writer) = duplex(Pipe::Server(connected));
        Ok((reader, writer, PeerInfo::windows(pid, sid)))
    }
}
