//! Pipe pairs on Unix: two FIFOs.
//!
//! For programs that can only open files by name: the server creates two FIFOs in the same
//! private directory as the named-pipe endpoints, `<name>.in` (client to server) and
//! `<name>.out` (server to client), both mode 0600, and serves one client at a time over them.
//! The client opens them by name with `connect`.
//!
//! FIFOs are easy to misuse: opening one blocks until the other side opens it too, so two
//! programs that open a pair in different orders wait for each other forever. Here nothing
//! blocks:
//!
//! * the client opens `<name>.out` for reading first, then `<name>.in` for writing, both without
//!   waiting; with no server it gets [`ConnectError::NotFound`] at once;
//! * a second client waits while one is connected (a lock file decides), and gets
//!   [`ConnectError::Busy`] if it stays connected for [`ClientConfig::connect_timeout`];
//! * a peer that writes to `<name>.in` without having opened `<name>.out` (the wrong order) is
//!   refused: what it wrote is discarded, and if it then blocks opening `<name>.out` it is woken
//!   and reads end-of-file. The server goes on with the next client;
//! * a client that takes the connection (opens `<name>.out`, which the server notices within a
//!   tenth of a second) has the server's handshake timeout to send its first bytes, and the
//!   handshake timeout from them to complete its handshake: one that opens both FIFOs and sends
//!   nothing is dropped (it reads end-of-file), so it cannot keep the clients after it waiting;
//! * a connection that fails before it is served (the client's FIFO cannot be opened: out of
//!   descriptors, or something else at its path, such as a symbolic link or a regular file) is
//!   logged and dropped, and the server goes on;
//! * a FIFO removed, or `<name>.in` replaced by another file (the server reads only the FIFO
//!   it made at bind), ends [`PairServer::serve`] with an error: clients could not reach the
//!   server any more. An idle server notices within a tenth of a second.
//!
//! # Lock files, and what is left behind
//!
//! Beside the FIFOs live three lock files (the two of the connection with a leading dot, which
//! no endpoint's name has, so that no endpoint's own lock is ever one of them):
//!
//! * `<name>.lock`, held by the server for its life: it owns the name, exactly as for a Unix
//!   socket (a name has one server, socket or FIFO pair);
//! * `.<name>.session.lock`, created by the server when it binds and locked by it while it
//!   serves a client, until both FIFOs of that connection are closed;
//! * `.<name>.client.lock`, held by the connected client: one client at a time.
//!
//! `<name>.lock` and `.<name>.client.lock` are taken the checked way the socket module
//! documents (lock, then check that the file locked is still the one at the path), so their
//! holders remove them before releasing them without ever letting two hold one. Clients only
//! look at `.<name>.session.lock` and `<name>.lock` (lock for an instant, checked the same way)
//! and never create them.
//!
//! A server that stops (dropped, or its [`PairServer::serve`] future dropped) removes, while
//! it still owns the name: both FIFOs, `.<name>.session.lock`, `.<name>.client.lock` if no client
//! holds it, and last `<name>.lock`, before releasing the name. A client removes
//! `.<name>.client.lock` when its connection ends (or its connect fails). What stays:
//!
//! * after a killed server, its FIFOs and lock files; the next server on the name reclaims the
//!   FIFOs and reuses the lock files;
//! * after a killed client, `.<name>.client.lock`, reused by the next client and removed by the
//!   server when it stops;
//! * `.<name>.client.lock` of a client still connected when the server stops: removed by that
//!   client when it notices.
//!
//! A client that looks at `<name>.lock` (only when the server's FIFO has no reader, to tell
//! "between two clients" from "no server") holds it for an instant: a server binding the name
//! at that very instant gets [`BindError::AddrInUse`].
//!

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Dispatch, ServerConfig};
use tokio::net::unix::pipe;

use crate::endpoint::Endpoint;
use crate::error::BindError;
use crate::limits::{RateLimited, ACCEPT_ERROR_LOG_EVERY};
use crate::pipes::serve_pipes;
use crate::sys::{
    identity, is_transient_accept_error, open_lock_file, own_name, remove_own, remove_stale,
    HeldLock,
};

mod client;

pub use client::connect;

/// How often a waiting client tries again.
const RETRY: Duration = Duration::from_millis(10);

/// The most a refused peer's writes are drained, in bytes: four times a Linux FIFO's capacity.
const REFUSED_DRAIN: usize = 256 * 1024;

/// How often an idle server looks whether a client has opened its reading end of
/// `<name>.out` (which no event tells), to start the client's handshake timeout.
const TAKEN_POLL: Duration = Duration::from_millis(100);

/// How long the server waits before it opens its FIFO again after a transient failure (out of
/// descriptors, for example).
const TRANSIENT_PAUSE: Duration = Duration::from_millis(20);

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.in")),
        dir.join(format!("{name}.out")),
    )
}

/// The session lock's path: with a leading dot, which no name has, so that it is never the
/// name lock of another endpoint (`foo.session` would own `foo.session.lock`).
fn session_lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.session.lock"))
}

/// The client lock's path, kept apart from every name lock as the session lock is.
fn client_lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.client.lock"))
}

fn open_flags() -> i32 {
    libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW
}

/// A FIFO pair bound to a name, ready to [`serve`](PairServer::serve).
#[derive(Debug)]
pub struct PairServer {
    input: PathBuf,
    /// The device and inode of the client-to-server FIFO made at bind: the server reads only
    /// that one.
    input_id: (u64, u64),
    output: PathBuf,
    output_id: (u64, u64),
    /// Locked while a client is connected.
    session: File,
    session_path: PathBuf,
    session_id: (u64, u64),
    /// The two FIFOs, held open by path only where the system can: their identities stay
    /// theirs.
    _held: [Option<File>; 2],
    client_lock: PathBuf,
    /// Held for the server's life: it owns the name. Dropped last, after the other files are
    /// removed, which removes the lock file and then releases the name.
    _lock: HeldLock,
}

/// The session lock, released when dropped.
struct SessionLock<'a>(&'a File);

impl Drop for SessionLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl PairServer {
    /// Takes `endpoint`'s name and creates its two FIFOs (mode 0600), replacing FIFOs left by a
    /// server that is gone.
    ///
    /// # Errors
    ///
    /// [`BindError::AddrInUse`] if a live server (FIFO or socket) holds the name,
    /// [`BindError::SymlinkAtPath`] or [`BindError::NotAFifo`] if something else sits at a
    /// FIFO's path (it is left alone), [`BindError::Endpoint`] if the directory is not private,
    /// [`BindError::Io`] if creating them fails.
    pub fn bind(endpoint: &Endpoint) -> Result<Self, BindError> {
        let (dir, lock) = own_name(endpoint)?;
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };
        let session_path = session_lock_path(&dir, &name);
        let session = open_lock_file(&session_path).map_err(io_err)?;
        let (input, output) = paths(&dir, &name);
        let mut made: Vec<&Path> = Vec::with_capacity(2);
        for path in [&input, &output] {
            // We hold the lock, so whoever made a FIFO here is gone.
            let placed = remove_stale(path, FileTypeExt::is_fifo, |path| BindError::NotAFifo {
                path,
            })
            .map_err(|e| e.into_bind_error(io_err))
            .and_then(|()| make_fifo(path).map_err(io_err));
            if let Err(error) = placed {
                // Undo only what we made; what we refused to remove stays.
                for path in made {
                    let _ = fs::remove_file(path);
                }
                let _ = fs::remove_file(&session_path);
                return Err(error);
            }
            made.push(path);
        }
        // Held (without opening either end) so that their inodes, which tell them from a next
        // server's FIFOs at the same paths, cannot be given to other files meanwhile.
        let made_ids = (|| {
            let held = [hold(&input)?, hold(&output)?];
            let ids = (
                identity(&fs::symlink_metadata(&input)?),
                identity(&fs::symlink_metadata(&output)?),
                identity(&session.metadata()?),
            );
            Ok((ids, held))
        })();
        let ((input_id, output_id, session_id), held) = match made_ids {
            Ok(made) => made,
            Err(error) => {
                for path in made {
                    let _ = fs::remove_file(path);
                }
                let _ = fs::remove_file(&session_path);
                return Err(io_err(error));
            }
        };
        Ok(Self {
            input,
            input_id,
            output,
            output_id,
            session,
            session_path,
            session_id,
            _held: held,
            client_lock: client_lock_path(&dir, &name),
            _lock: lock,
        })
    }

    /// [`PairServer::bind`]; the settings are the ones `serve` will use, and nothing on Unix
    /// depends on them before it (the same signature as on Windows, where the maximum frame
    /// and the handshake timeout matter from the start).
    ///
    /// # Errors
    ///
    /// As [`PairServer::bind`].
    pub fn bind_with(endpoint: &Endpoint, config: &ServerConfig) -> Result<Self, BindError> {
        let _ = config;
        Self::bind(endpoint)
    }

    /// The two FIFOs: client to server, and server to client.
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.input, &self.output)
    }

    /// Serves clients one at a time, each until it closes its connection. Runs until dropped
    /// (which closes the current connection and removes the FIFOs and the lock files; see the
    /// module documentation).
    ///
    /// A client that takes the connection (opens its reading end of `<name>.out`, seen within
    /// a tenth of a second) has [`ServerConfig::handshake_timeout`] to send its first bytes,
    /// and the handshake timeout from them to complete its handshake. One that opens both FIFOs
    /// and sends nothing is dropped, and the next client is served.
    ///
    /// # Errors
    ///
    /// Only if a FIFO is gone: removed, or `<name>.in` replaced by another file (an error of
    /// kind [`io::ErrorKind::NotFound`] either way). Errors of single connections (a client's
    /// FIFO that cannot be opened, out of descriptors, a bad handshake) are logged and the next
    /// client is served.
    ///
    /// The future owns a copy of `config`, so it can be spawned.
    pub fn serve<D: Dispatch>(
        self,
        service: D,
        config: &ServerConfig,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'static {
        self.serve_owned(service, config.clone())
    }

    async fn serve_owned<D: Dispatch>(self, service: D, config: ServerConfig) -> io::Result<()> {
        let service = Arc::new(service);
        let mut errors = RateLimited::new(ACCEPT_ERROR_LOG_EVERY);
        loop {
            let reader = match self.open_input() {
                Ok(reader) => reader,
                Err(error) if is_transient_accept_error(&error) => {
                    if let Some(suppressed) = errors.allow() {
                        tracing::warn!(
                            fifo = %self.input.display(),
                            %error,
                            suppressed,
                            "cannot open the client-to-server FIFO; retrying"
                        );
                    }
                    // Out of descriptors or similar: give other connections a moment to close.
                    tokio::time::sleep(TRANSIENT_PAUSE).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Some(Connection {
                writer,
                session,
                deadline,
            }) = self.take(&reader, &config, &mut errors).await?
            else {
                continue;
            };
            tracing::debug!(fifo = %self.input.display(), "client connected");
            // The handshake has what is left of its time since the client's first bytes.
            let mut config = config.clone();
            config
                .handshake_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
            if let Err(error) = serve_pipes(reader, writer, Arc::clone(&service), &config).await {
                tracing::info!(%error, "FIFO connection ended with an error");
            }
            drop(session);
        }
    }

    /// Opens the client-to-server FIFO for the next client: the one made at bind, or the
    /// error [`PairServer::replaced`].
    fn open_input(&self) -> io::Result<pipe::Receiver> {
        let input = OpenOptions::new()
            .read(true)
            .custom_flags(open_flags())
            .open(&self.input)?;
        if identity(&input.metadata()?) != self.input_id {
            return Err(self.replaced());
        }
        pipe::Receiver::from_file(input)
    }

    /// The error for a client-to-server FIFO that is not the one made at bind: clients would
    /// write to a FIFO the server never reads.
    fn replaced(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} was replaced", self.input.display()),
        )
    }

    /// Waits for the next client to take the connection, and for its first bytes within the
    /// handshake timeout from then; opens its FIFO and takes the session lock. The handshake's
    /// deadline counts from the first bytes. `None` if there
    /// is nobody to serve (a writer that left, a client that sent nothing in time, a refused
    /// peer, a connection that failed); an error only if the FIFOs are gone or cannot be
    /// waited on.
    async fn take(
        &self,
        reader: &pipe::Receiver,
        config: &ServerConfig,
        errors: &mut RateLimited,
    ) -> io::Result<Option<Connection<'_>>> {
        // A FIFO that has had no writer since it was opened reports nothing: this waits for a
        // client to write its hello, or to open its reading end of the other FIFO first.
        let output = tokio::select! {
            ready = reader.readable() => {
                ready?;
                None
            }
            output = self.watch_output(errors) => Some(output?),
        };
        if output.is_some() {
            let first_bytes = tokio::time::Instant::now() + config.get_handshake_timeout();
            match tokio::time::timeout_at(first_bytes, reader.readable()).await {
                Ok(ready) => ready?,
                Err(_) => {
                    if let Some(suppressed) = errors.allow() {
                        tracing::warn!(
                            fifo = %self.input.display(),
                            suppressed,
                            "a client opened the FIFOs and sent nothing within the handshake \
                             timeout; dropped"
                        );
                    }
                    return Ok(None);
                }
            }
        }
        // The handshake has its whole time from the client's first bytes: a client that comes
        // while a departed one still holds the other FIFO open is not cut short.
        let deadline = tokio::time::Instant::now() + config.get_handshake_timeout();
        if bytes_waiting(reader) == 0 {
            // A writer came and went without a word (a previous client closing late): the
            // FIFO now reports end-of-file until it is opened afresh.
            return Ok(None);
        }
        // Held until both FIFOs are closed: the next client waits for it, so it never opens
        // the reading end of a FIFO that this connection is about to close.
        let session = match self.lock_session().await {
            Ok(session) => session,
            Err(error) => return Ok(self.fail(reader, &error, errors).await),
        };
        let output = match output {
            Some(output) => output,
            // A client opens its reading end first; a careless peer may open it only after
            // writing, so give it until the deadline to do so.
            None => match self.open_output(deadline).await {
                Ok(Some(output)) => output,
                Ok(None) => {
                    self.refuse(reader);
                    return Ok(None);
                }
                Err(error) if gone(&error) => return Err(error),
                Err(error) => return Ok(self.fail(reader, &error, errors).await),
            },
        };
        match pipe::Sender::from_file(output) {
            Ok(writer) => Ok(Some(Connection {
                writer,
                session,
                deadline,
            })),
            Err(error) => Ok(self.fail(reader, &error, errors).await),
        }
    }

    /// Ends a connection that failed before it was served (the session lock, if taken, is
    /// still held): logs why (at most once per [`ACCEPT_ERROR_LOG_EVERY`]), discards what the
    /// client wrote, and pauses a moment, so that an error that persists (a FIFO replaced by
    /// something the server cannot open) does not make a busy loop of a client that retries.
    async fn fail(
        &self,
        reader: &pipe::Receiver,
        error: &io::Error,
        errors: &mut RateLimited,
    ) -> Option<Connection<'_>> {
        if let Some(suppressed) = errors.allow() {
            tracing::warn!(fifo = %self.input.display(), %error, suppressed, "FIFO connection failed");
        }
        self.discard(reader);
        tokio::time::sleep(TRANSIENT_PAUSE).await;
        None
    }

    /// Tries to open the server-to-client FIFO now: `None` while no client has its reading end
    /// open.
    fn try_open_output(&self) -> io::Result<Option<File>> {
        match OpenOptions::new()
            .write(true)
            .custom_flags(open_flags())
            .open(&self.output)
        {
            // Something else put at the path (a regular file opens without a reader) fails
            // this connection at once, as a symbolic link or a directory there does.
            Ok(output) if !output.metadata()?.file_type().is_fifo() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a FIFO", self.output.display()),
            )),
            Ok(output) => Ok(Some(output)),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the server-to-client FIFO once a client has opened its reading end, looking every
    /// [`TAKEN_POLL`] (there is no event for it). Fails only if a FIFO is gone: either one
    /// removed, or the client-to-server FIFO replaced ([`PairServer::replaced`]); other errors
    /// are logged, and it looks again.
    async fn watch_output(&self, errors: &mut RateLimited) -> io::Result<File> {
        loop {
            // A client that has just left may still hold its reading end for a moment: look
            // only after a while.
            tokio::time::sleep(TAKEN_POLL).await;
            match fs::symlink_metadata(&self.input) {
                Ok(now) if identity(&now) != self.input_id => return Err(self.replaced()),
                Err(error) if gone(&error) => return Err(error),
                _ => {}
            }
            match self.try_open_output() {
                Ok(Some(output)) => return Ok(output),
                Ok(None) => {}
                Err(error) if gone(&error) => return Err(error),
                Err(error) => {
                    if let Some(suppressed) = errors.allow() {
                        tracing::warn!(
                            fifo = %self.output.display(),
                            %error,
                            suppressed,
                            "cannot open the server-to-client FIFO"
                        );
                    }
                }
            }
        }
    }

    /// Opens the server-to-client FIFO once the client has opened its reading end; `None` if
    /// it has not by `deadline`.
    async fn open_output(&self, deadline: tokio::time::Instant) -> io::Result<Option<File>> {
        loop {
            if let Some(output) = self.try_open_output()? {
                return Ok(Some(output));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Takes the session lock; a client checking it holds it only for an instant.
    async fn lock_session(&self) -> io::Result<SessionLock<'_>> {
        loop {
            match self.session.try_lock() {
                Ok(()) => return Ok(SessionLock(&self.session)),
                Err(fs::TryLockError::WouldBlock) => tokio::time::sleep(RETRY).await,
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// Refuses a peer that wrote but did not open its reading end.
    fn refuse(&self, reader: &pipe::Receiver) {
        tracing::warn!(
            fifo = %self.input.display(),
            "a peer wrote but never opened the server-to-client FIFO; refused"
        );
        self.discard(reader);
    }

    /// Ends a connection before it is served: discards what the peer wrote and wakes it.
    fn discard(&self, reader: &pipe::Receiver) {
        // Discard what it wrote, so the next client does not read it: at most what the FIFO
        // holds a few times over, since a peer that keeps writing would keep this loop (which
        // does not wait) going, and this task with it.
        let mut sink = [0u8; 4096];
        for _ in 0..REFUSED_DRAIN / sink.len() {
            if !matches!(reader.try_read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
        // If it now blocks opening its reading end, a writer that comes and goes wakes it, and
        // it reads end-of-file.
        let _ = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(open_flags())
            .open(&self.output);
    }
}

/// A client's connection, taken by [`PairServer::take`].
struct Connection<'a> {
    /// The server's end of the server-to-client FIFO.
    writer: pipe::Sender,
    /// Held until both FIFOs are closed.
    session: SessionLock<'a>,
    /// When the client's handshake must be complete.
    deadline: tokio::time::Instant,
}

/// Whether `error`, opening one of the server's FIFOs, means it is gone: nothing can be served
/// any more.
fn gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

impl Drop for PairServer {
    fn drop(&mut self) {
        // All while we still own the name (the name's lock is a field, dropped after this), so
        // no client finds FIFOs nobody serves and nothing of a next server is removed; and
        // only the files this server made: if they were removed from under it, a new server
        // may have made its own at the same paths.
        remove_own(&self.input, self.input_id);
        remove_own(&self.output, self.output_id);
        // Only the name's owner creates or removes this one; a client looking at it then finds
        // it gone and reports that no server serves the name.
        remove_own(&self.session_path, self.session_id);
        // Left by a killed client: take it the checked way, and dropping it removes it. A
        // client still connected keeps it and removes it itself.
        if let Ok(Some(stale)) = HeldLock::try_acquire(&self.client_lock) {
            drop(stale);
        }
    }
}

/// How many bytes can be read from `reader` now; 1 if the count is unavailable.
fn bytes_waiting(reader: &pipe::Receiver) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for that.
    let result = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut count) };
    if result == -1 {
        return 1;
    }
    usize::try_from(count).unwrap_or(1)
}

/// Holds the file at `path` by path only (`O_PATH`: a FIFO opened so is opened by neither
/// end), never through a symbolic link. Systems without `O_PATH` hold nothing: there, an
/// inode given to another file after the server's were removed from under it can still be
/// taken for the server's.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn hold(path: &Path) -> io::Result<Option<File>> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map(Some)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn hold(_path: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

fn make_fifo(path: &Path) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // The umask can only have removed bits; make the mode exact.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}
