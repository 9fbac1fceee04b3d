//! Unix domain sockets in a directory private to the user.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rpc_core::frame::{FrameReader, FrameWriter};
use rpc_core::{ConnectError, PeerInfo};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

use crate::endpoint::Endpoint;
use crate::server::{BindError, ServerOptions};
use crate::ClientOptions;

type Reader = FrameReader<OwnedReadHalf>;
type Writer = FrameWriter<OwnedWriteHalf>;

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The directory for endpoints without an explicit one.
pub(crate) fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() => runtime.join("rpc"),
        _ => std::env::temp_dir().join(format!("rpc-{}", euid())),
    }
}

fn insecure(path: &Path, reason: &'static str) -> ConnectError {
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
        return Err(insecure(dir, "it is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(insecure(dir, "it is not a directory"));
    }
    if !owners.contains(&meta.uid()) {
        return Err(insecure(dir, "it is owned by another user"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(insecure(dir, "it is accessible to other users"));
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
pub(crate) fn own_name(endpoint: &Endpoint) -> Result<(PathBuf, File), BindError> {
    let dir = server_dir(endpoint)?;
    let name = endpoint.name();
    match try_lock(&dir.join(format!("{name}.lock"))) {
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

/// Opens a lock file, creating it with mode 0600; never follows a symbolic link.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens (creating it 0600) the lock file at `path` and takes its exclusive lock without
/// waiting: `None` if another process holds it. The lock lasts as long as the file is open.
pub(crate) fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let lock = open_lock_file(path)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn socket_path(dir: &Path, endpoint: &Endpoint) -> PathBuf {
    dir.join(format!("{}.sock", endpoint.name()))
}

/// A listening socket and the lock that makes it ours.
pub(crate) struct Listener {
    listener: UnixListener,
    path: PathBuf,
    /// Held (locked) for the listener's life; released when dropped.
    _lock: File,
    max_frame: u32,
}

impl Listener {
    pub(crate) fn bind(endpoint: &Endpoint, options: &ServerOptions) -> Result<Self, BindError> {
        let (dir, lock) = own_name(endpoint)?;
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };

        let path = socket_path(&dir, endpoint);
        // We hold the lock, so whoever made a socket here is gone: reclaim it.
        remove_stale(&path, FileTypeExt::is_socket, |path| {
            BindError::NotASocket { path }
        })
        .map_err(|e| e.into_bind_error(io_err))?;

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
        std_listener.set_nonblocking(true).map_err(io_err)?;
        let listener = UnixListener::from_std(std_listener).map_err(io_err)?;
        Ok(Self {
            listener,
            path,
            _lock: lock,
            max_frame: options.config.max_frame,
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
        Ok((
            FrameReader::with_max_frame(read, self.max_frame),
            FrameWriter::new(write),
            peer,
        ))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Remove our socket before the lock is released, so no client finds a dead socket.
        let _ = fs::remove_file(&self.path);
    }
}

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

pub(crate) async fn connect(
    endpoint: &Endpoint,
    options: &ClientOptions,
) -> Result<(Reader, Writer), ConnectError> {
    let me = euid();
    let dir = endpoint.dir().map_or_else(default_dir, Path::to_path_buf);
    check_private_dir(&dir, &[me, 0])?;
    let path = socket_path(&dir, endpoint);
    let shown = || path.display().to_string();
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ConnectError::InsecureDirectory {
            path: shown(),
            reason: "the socket is a symbolic link",
        });
    }
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ConnectError::NotFound { endpoint: shown() }
            }
            io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied { endpoint: shown() },
            _ => ConnectError::Io {
                endpoint: shown(),
                source: e.into(),
            },
        })?;
    let cred = stream.peer_cred().map_err(|e| ConnectError::Io {
        endpoint: shown(),
        source: e.into(),
    })?;
    if !trusted_server(cred.uid(), me) {
        return Err(ConnectError::UntrustedServer {
            endpoint: shown(),
            expected: format!("uid {me} or root"),
            actual: format!("uid {}", cred.uid()),
        });
    }
    let (read, write) = stream.into_split();
    Ok((
        FrameReader::with_max_frame(read, options.config.max_frame),
        FrameWriter::new(write),
    ))
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
