//! Unix domain sockets in a directory private to the user.
//!
//! # Who owns a name
//!
//! The owner of a name is the process that holds the exclusive lock (`flock`) of the lock file
//! `<name>.lock` in the endpoint's directory; the FIFO pairs of [`crate::pair`] take the same
//! lock, so a name has one server whatever its kind. The kernel releases the lock when the
//! process dies, so a server that crashed never keeps its name.
//!
//! Taking the name is: open (creating if missing) `<name>.lock`, take its lock without waiting
//! ([`BindError::AddrInUse`] if someone holds it), then check that the file now locked is
//! still the one at the path (same device and inode). If it is not, the previous owner removed
//! it between our open and our lock: drop it and start again with the file at the path now.
//!
//! # What a stopped server cleans, and what stays
//!
//! When a server stops (its listener is dropped) it removes, while it still holds the lock:
//! first its socket, then the lock file; only then does it close the lock file, which
//! releases the lock. A server that stops normally leaves nothing behind.
//!
//! Removing a lock file that others may have open is safe only because of the check above.
//! Without it, a server B that opened `<name>.lock` just before the owner A removed it would
//! lock the removed file once A let go, while a server C created a new file at the path and
//! locked that one: two owners. With the check, B finds its file gone from the path and tries
//! again, meeting C's lock. And the file at the path never changes under a checked owner: only
//! an owner removes it, only while holding the lock of the file it removes, and a new one is
//! created only where there is none.
//!
//! What stays:
//!
//! * after a server that was killed (or lost power), its socket and its lock file. The next
//!   server on the name takes the lock, removes the socket (checked to be a socket) and binds
//!   its own; the lock file is reused;
//! * after a server killed between binding its socket and moving it into place, the
//!   temporary `.<name>.<pid>.<n>.tmp` socket beside it;
//! * the directory itself, which other names share.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::frame::FrameWriter;
use rpc_core::{ClientConfig, PeerInfo, ServerConfig};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use crate::endpoint::Endpoint;
use crate::error::{BindError, ConnectError, UnsafeDirectory, User};

pub(crate) mod child;
mod lock;
pub(crate) mod pair;
mod reader;

pub(crate) use lock::{identity, open_lock_file, probe_lock, remove_own, HeldLock, LockState};
use reader::SocketReader;

type Reader = SocketReader;
type Writer = FrameWriter<OwnedWriteHalf>;

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The names of the sockets in the user's private directory.
pub(crate) fn list_endpoints() -> Result<Vec<String>, ConnectError> {
    let dir = default_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConnectError::Io {
                endpoint: dir.display().to_string(),
                source: std::sync::Arc::new(source),
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".sock").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The directory for endpoints without an explicit one.
pub(crate) fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() => runtime.join("rpc"),
        _ => std::env::temp_dir().join(format!("rpc-{}", euid())),
    }
}

fn insecure(path: &Path, reason: UnsafeDirectory) -> ConnectError {
    ConnectError::InsecureDirectory {
        path: path.display().to_string(),
        reason,
    }
}

/// Checks that `dir` is a real directory owned by `owner`, closed to group and others.
pub(crate) fn check_private_dir(dir: &Path, owners: &[u32]) -> Result<(), ConnectError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ConnectError::NotFound {
            endpoint: dir.display().to_string(),
        },
        _ => ConnectError::Io {
            endpoint: dir.display().to_string(),
            source: e.into(),
        },
    })?;
    if meta.file_type().is_symlink() {
        return Err(insecure(dir, UnsafeDirectory::Symlink));
    }
    if !meta.is_dir() {
        return Err(insecure(dir, UnsafeDirectory::NotADirectory));
    }
    if !owners.contains(&meta.uid()) {
        return Err(insecure(dir, UnsafeDirectory::OtherOwner));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(insecure(dir, UnsafeDirectory::OpenToOthers));
    }
    Ok(())
}

/// The endpoint's directory, created (0700) if missing, and checked.
pub(crate) fn server_dir(endpoint: &Endpoint) -> Result<PathBuf, ConnectError> {
    let dir = endpoint.dir().map_or_else(default_dir, Path::to_path_buf);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(ConnectError::Io {
                endpoint: dir.display().to_string(),
                source: e.into(),
            })
        }
    }
    check_private_dir(&dir, &[euid()])?;
    Ok(dir)
}

/// Takes the name of `endpoint` for a server: its directory (created and checked) and the held
/// lock that decides who owns the name, for as long as the server runs.
pub(crate) fn own_name(endpoint: &Endpoint) -> Result<(PathBuf, HeldLock), BindError> {
    let dir = server_dir(endpoint)?;
    let name = endpoint.name();
    match HeldLock::try_acquire(&dir.join(format!("{name}.lock"))) {
        Ok(Some(lock)) => Ok((dir, lock)),
        Ok(None) => Err(BindError::AddrInUse {
            name: name.to_owned(),
        }),
        Err(source) => Err(BindError::Io {
            name: name.to_owned(),
            source,
        }),
    }
}

/// Removes what a server that is gone left at `path` (the caller holds the name's lock), if it
/// is of the kind `stale` accepts. A symbolic link, or anything of another kind, is left alone
/// and refused.
pub(crate) fn remove_stale(
    path: &Path,
    stale: fn(&fs::FileType) -> bool,
    wrong_kind: fn(String) -> BindError,
) -> Result<(), StaleError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(StaleError::Refused(BindError::SymlinkAtPath {
                path: path.display().to_string(),
            }))
        }
        Ok(meta) if stale(&meta.file_type()) => {
            tracing::info!(path = %path.display(), "removing what a stopped server left");
            fs::remove_file(path).map_err(StaleError::Io)
        }
        Ok(_) => Err(StaleError::Refused(wrong_kind(path.display().to_string()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StaleError::Io(e)),
    }
}

/// Why [`remove_stale`] did not clear a path.
pub(crate) enum StaleError {
    /// Something that is not ours is there; it is left alone.
    Refused(BindError),
    /// Looking or removing failed.
    Io(io::Error),
}

impl StaleError {
    /// The bind error, wrapping an I/O failure with `io_err`.
    pub(crate) fn into_bind_error(self, io_err: impl FnOnce(io::Error) -> BindError) -> BindError {
        match self {
            StaleError::Refused(error) => error,
            StaleError::Io(error) => io_err(error),
        }
    }
}

fn socket_path(dir: &Path, endpoint: &Endpoint) -> PathBuf {
    dir.join(format!("{}.sock", endpoint.name()))
}

/// Removes the temporary sockets `.{name}.{pid}.{n}.tmp` in `dir` (what [`Listener::bind`]
/// binds before it moves the socket into place), left by servers of `name` killed between the
/// two. The caller holds the name's lock, so no live server is binding under these names.
/// Best effort: what cannot be read or removed stays (a bind that picks that name fails with
/// the error).
fn remove_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let ours = file
            .to_str()
            .and_then(|file| file.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(pid, n)| {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                digits(pid) && digits(n)
            });
        if ours {
            let _ = remove_stale(&entry.path(), FileTypeExt::is_socket, |path| {
                BindError::NotASocket { path }
            });
        }
    }
}

/// A listening socket and the lock that makes it ours.
pub(crate) struct Listener {
    listener: UnixListener,
    path: PathBuf,
    /// The identity of the socket file at `path`, which only this listener removes.
    id: (u64, u64),
    /// Held for the listener's life; dropped last, after the socket is removed, which removes
    /// the lock file and then releases the lock.
    _lock: HeldLock,
}

impl Listener {
    /// Closes the listener: its socket is gone when this returns.
    pub(crate) async fn close(self) {
        drop(self);
    }

    pub(crate) fn bind(endpoint: &Endpoint, _config: &ServerConfig) -> Result<Self, BindError> {
        let (dir, lock) = own_name(endpoint)?;
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };

        let path = socket_path(&dir, endpoint);
        // The lock is ours, but a server whose lock file was removed from under it still takes
        // connections on its socket: the name is its own.
        if lock::socket_answers(&path) {
            return Err(BindError::AddrInUse { name: name.clone() });
        }
        // We hold the lock, so whoever made a socket here is gone: reclaim it.
        remove_stale(&path, FileTypeExt::is_socket, |path| {
            BindError::NotASocket { path }
        })
        .map_err(|e| e.into_bind_error(io_err))?;

        // The temporary sockets of this name that servers killed while binding left: ours too,
        // and one of them may have the name this bind picks (a server that is always pid 1 in
        // its container picks the same names after every restart).
        remove_temporaries(&dir, &name);

        // Bind under a temporary name, restrict it to the user, then move it into place: the
        // socket is never reachable at its real path with any other mode.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let std_listener = std::os::unix::net::UnixListener::bind(&temp).map_err(io_err)?;
        let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&temp);
            return Err(io_err(e));
        }
        let id = match fs::symlink_metadata(&path) {
            Ok(placed) => identity(&placed),
            Err(e) => {
                // Ours, and we still own the name: nobody else's socket is there.
                let _ = fs::remove_file(&path);
                return Err(io_err(e));
            }
        };
        let listener = std_listener
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(std_listener))
            .map_err(|e| {
                remove_own(&path, id);
                io_err(e)
            })?;
        Ok(Self {
            listener,
            path,
            id,
            _lock: lock,
        })
    }

    pub(crate) fn address(&self) -> String {
        self.path.display().to_string()
    }

    pub(crate) async fn accept(&mut self) -> io::Result<(Reader, Writer, PeerInfo)> {
        let (stream, _) = self.listener.accept().await?;
        let peer = match stream.peer_cred() {
            Ok(cred) => PeerInfo::unix(
                cred.pid().and_then(|p| u32::try_from(p).ok()),
                Some(cred.uid()),
            ),
            Err(_) => PeerInfo::unknown(),
        };
        let (read, write) = stream.into_split();
        Ok((SocketReader::new(read), FrameWriter::new(write), peer))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Remove our socket while we still own the name (the lock is a field, dropped after
        // this), so no client finds a dead socket and no new server's socket is removed; and
        // only if it is ours, not a new server's made after ours was removed from under us.
        remove_own(&self.path, self.id);
    }
}

/// Whether a server that is shutting down keeps its listener while its connections drain: not
/// here, where the socket disappears at once and a new client is told `NotFound` at once.
pub(crate) const DRAINING_SERVER_TURNS_CLIENTS_AWAY: bool = false;

pub(crate) fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    )
}

pub(crate) async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Whether a server running as `server_uid` may be trusted by a client running as `own_uid`:
/// the same user, or root.
pub(crate) fn trusted_server(server_uid: u32, own_uid: u32) -> bool {
    server_uid == own_uid || server_uid == 0
}

/// How long a client waits between attempts while the server's queue of connections waiting
/// to be accepted is full.
const BUSY_RETRY: Duration = Duration::from_millis(10);

pub(crate) async fn connect(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(Reader, Writer), ConnectError> {
    let give_up = Instant::now() + config.get_connect_timeout();
    let me = euid();
    let dir = endpoint.dir().map_or_else(default_dir, Path::to_path_buf);
    check_private_dir(&dir, &[me, 0])?;
    let path = socket_path(&dir, endpoint);
    let shown = || path.display().to_string();
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ConnectError::InsecureDirectory {
            path: shown(),
            reason: UnsafeDirectory::EndpointIsSymlink,
        });
    }
    let stream = loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => break stream,
            // The server's queue of connections waiting to be accepted is full (it is slow to
            // accept, or out of descriptors for a moment), as Linux says it: busy, as when every
            // instance of a Windows pipe is taken. (Other systems refuse the connection.) No event says when it has room: poll briefly, within the
            // connect timeout.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= give_up {
                    return Err(ConnectError::Busy { endpoint: shown() });
                }
                tokio::time::sleep(BUSY_RETRY).await;
            }
            Err(e) => {
                return Err(match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ConnectError::NotFound { endpoint: shown() }
                    }
                    io::ErrorKind::PermissionDenied => {
                        ConnectError::PermissionDenied { endpoint: shown() }
                    }
                    _ => ConnectError::Io {
                        endpoint: shown(),
                        source: e.into(),
                    },
                })
            }
        }
    };
    let cred = stream.peer_cred().map_err(|e| ConnectError::Io {
        endpoint: shown(),
        source: e.into(),
    })?;
    if !trusted_server(cred.uid(), me) {
        return Err(ConnectError::UntrustedServer {
            endpoint: shown(),
            expected: User::Uid(me),
            actual: User::Uid(cred.uid()),
        });
    }
    let (read, write) = stream.into_split();
    Ok((SocketReader::new(read), FrameWriter::new(write)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_or_root_is_trusted() {
        assert!(trusted_server(1000, 1000));
        assert!(trusted_server(0, 1000));
        assert!(trusted_server(0, 0));
        assert!(!trusted_server(1001, 1000));
        assert!(
            !trusted_server(1000, 0),
            "root does not trust an ordinary user's server"
        );
    }

    #[test]
    fn default_dir_is_per_user() {
        let dir = default_dir();
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(runtime) if Path::new(&runtime).is_absolute() => {
                assert_eq!(dir, Path::new(&runtime).join("rpc"));
            }
            _ => assert!(dir.ends_with(format!("rpc-{}", euid()))),
        }
    }
}
