//! The accept loop of a named endpoint: always a few instances waiting.

use std::io;
use std::time::Duration;

use rpc_core::{PeerInfo, ServerConfig};
use tokio::net::windows::named_pipe::NamedPipeServer;
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NO_DATA};
use windows_sys::Win32::System::Pipes::{WaitNamedPipeW, NMPWAIT_NOWAIT};

use super::frames::{duplex, PipeReader, PipeWriter};
use super::pipe::{self, client_process_id, duplex_options, Pipe};
use super::pipe_path;
use super::security::{own_user_sid, peer_user_sid, pipe_sddl, SecurityDescriptor};
use crate::endpoint::Endpoint;
use crate::error::BindError;

/// Most time [`Listener::close`] waits for the pipe's name to disappear.
const NAME_GONE_WITHIN: Duration = Duration::from_secs(1);

/// How often [`Listener::close`] looks whether the name is gone.
const NAME_GONE_POLL: Duration = Duration::from_millis(1);

/// Instances kept waiting for clients. More than one, so that a program that opens the pipe in
/// a loop cannot take every free instance in turn and keep other clients told that all are
/// busy: with one, each of its openings took the only one until the server made the next.
const WAITING: usize = 4;

/// A named-pipe server that always has instances waiting for clients.
#[derive(Debug)]
pub(crate) struct Listener {
    path: String,
    descriptor: SecurityDescriptor,
    /// The instances waiting for clients: [`WAITING`] of them, fewer only after creating one
    /// failed (the next accept tries again).
    waiting: Vec<NamedPipeServer>,
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
        let mut listener = Self {
            path,
            descriptor,
            waiting: vec![first],
        };
        // The others now, so that they wait from the start; one that fails is made later.
        let _ = listener.top_up();
        Ok(listener)
    }

    /// Creates instances until [`WAITING`] wait. Fails only if none is left waiting.
    fn top_up(&mut self) -> io::Result<()> {
        while self.waiting.len() < WAITING {
            match pipe::create(&duplex_options(false), &self.path, &self.descriptor) {
                Ok(pipe) => self.waiting.push(pipe),
                Err(e) if self.waiting.is_empty() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "could not create another waiting instance");
                    break;
                }
            }
        }
        Ok(())
    }

    /// The pipe's path.
    pub(crate) fn address(&self) -> String {
        self.path.clone()
    }

    /// Closes the listener and waits until no instance of its pipe is left, for up to a second
    /// (the server's connections are over by then): an instance dropped while it waits for a
    /// client closes only once the runtime has taken back its cancelled wait, and a client that
    /// came meanwhile would open it and find it broken, instead of being told that no server
    /// is there. There is no event for it: the name is looked up each millisecond, on a thread
    /// of the blocking pool (a lookup may wait a millisecond itself).
    pub(crate) async fn close(self) {
        let path: Vec<u16> = self.path.encode_utf16().chain(Some(0)).collect();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            let give_up = std::time::Instant::now() + NAME_GONE_WITHIN;
            while name_exists(&path) && std::time::Instant::now() < give_up {
                std::thread::sleep(NAME_GONE_POLL);
            }
        })
        .await;
    }

    /// Waits for the next client, on any of the waiting instances. Cancel-safe: a client that
    /// connects meanwhile is kept for the next call (the connect stays in flight on its
    /// instance).
    pub(crate) async fn accept(&mut self) -> io::Result<(PipeReader, PipeWriter, PeerInfo)> {
        self.top_up()?;
        // Instances that failed in a row in this call: a failure that every new instance meets
        // at once is the endpoint's, not an instance's, and ends the accepting.
        let mut broken = 0;
        let index = loop {
            let (result, index) = {
                let connects = self
                    .waiting
                    .iter()
                    .map(|waiting| Box::pin(waiting.connect()));
                let (result, index, _others) = futures_util::future::select_all(connects).await;
                (result, index)
            };
            match result {
                Ok(()) => break index,
                // A client came and went before we saw it: the instance is left closing.
                // Disconnect it so that it listens again, and wait for the next client.
                Err(e)
                    if e.raw_os_error() == Some(ERROR_NO_DATA as i32)
                        && self
                            .waiting
                            .get(index)
                            .is_some_and(|waiting| waiting.disconnect().is_ok()) => {}
                // That instance is broken: another takes its place, the others wait on.
                Err(e) => {
                    if index < self.waiting.len() {
                        self.waiting.swap_remove(index);
                    }
                    broken += 1;
                    if broken > WAITING {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "a waiting instance of the pipe failed; replaced");
                    self.top_up()?;
                }
            }
        };
        if index >= self.waiting.len() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let connected = self.waiting.swap_remove(index);
        // Its place is taken before it is handed off; if that fails, the next accept tries
        // again, and the others wait meanwhile.
        let _ = self.top_up();
        let pid = client_process_id(&connected);
        let sid = peer_user_sid(Pipe::server_handle(&connected), pid);
        let (reader, writer) = duplex(Pipe::Server(connected));
        Ok((reader, writer, PeerInfo::windows(pid, sid)))
    }
}

/// Whether a pipe of the name `path` (NUL-terminated) exists, in any state; waits up to a
/// millisecond for a free instance if every one is busy.
fn name_exists(path: &[u16]) -> bool {
    // SAFETY: `path` is a NUL-terminated wide string that outlives the call.
    let available = unsafe { WaitNamedPipeW(path.as_ptr(), NMPWAIT_NOWAIT) };
    available != 0 || io::Error::last_os_error().raw_os_error() != Some(ERROR_FILE_NOT_FOUND as i32)
}
