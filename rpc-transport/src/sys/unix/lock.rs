//! Lock files: who owns a name, taken and given up so that a name has one owner at a time
//! (the parent module's documentation tells why the order and the check make it so), and the
//! files a server removes when it stops, only if they are still its own.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
///
/// The file locked may have been removed from `path` meanwhile: [`HeldLock::try_acquire`]
/// checks for that, and is what a lock that may be removed must be taken with.
fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let lock = open_lock_file(path)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// How often a taker starts again because the lock file it locked was removed meanwhile,
/// before it reports the lock as held: the lock is changing hands faster than it can look.
const LOCK_ATTEMPTS: usize = 64;

/// Whether `file` is the file at `path` now (same device and inode); `false` if nothing is
/// there. Inode numbers are not reused while `file` is open, so this cannot be fooled.
fn is_at_path(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(there) => Ok(identity(&there) == identity(&held)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A file's identity: its device and inode.
pub(crate) fn identity(metadata: &fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

/// Removes the file at `path` if it is still the one whose identity is `id`. A server removes
/// its files by path when it stops; if they were removed from under it meanwhile (the
/// directory cleaned by the system: a user's runtime directory at logout, an old file of
/// `/tmp` aged out) and a new server took the name, what is at the path is the new server's.
pub(crate) fn remove_own(path: &Path, id: (u64, u64)) {
    if fs::symlink_metadata(path).is_ok_and(|there| identity(&there) == id) {
        let _ = fs::remove_file(path);
    }
}

/// The exclusive lock of a lock file, checked to be the file at its path when taken.
///
/// Dropping it removes the file and only then releases the lock; the module documentation
/// explains why that order, together with the check, keeps one holder at a time. Every taker
/// of a lock that is dropped this way must take it with [`HeldLock::try_acquire`] (or only look
/// with [`probe_lock`]).
#[derive(Debug)]
pub(crate) struct HeldLock {
    path: PathBuf,
    /// Open and locked until after the file is removed.
    _file: File,
}

impl HeldLock {
    /// Opens (creating it 0600, never through a symbolic link) the lock file at `path` and
    /// takes its lock without waiting: `None` if another process holds it.
    pub(crate) fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        for _ in 0..LOCK_ATTEMPTS {
            let Some(file) = try_lock(path)? else {
                return Ok(None);
            };
            if is_at_path(&file, path)? {
                return Ok(Some(Self {
                    path: path.to_path_buf(),
                    _file: file,
                }));
            }
            // Its holder removed it between our open and our lock; take the one there now.
        }
        Ok(None)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Only if it is still ours: a lock file removed from under its holder (the directory
        // cleaned by the system) may have been made again by a new server, which holds it.
        if !is_at_path(&self._file, &self.path).unwrap_or(false) {
            return;
        }
        // Still locked here: whoever opened this file and waits for its lock will find, once
        // it has it, that the file is no longer at the path, and start again.
        if let Err(error) = fs::remove_file(&self.path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %self.path.display(), %error, "lock file not removed");
            }
        }
        // `_file` is closed after this, which releases the lock.
    }
}

/// What [`probe_lock`] found at a lock file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    /// No lock file: nobody has taken it since it was last removed.
    Missing,
    /// The lock file is there and nobody holds its lock.
    Free,
    /// Someone holds the lock.
    Held,
}

/// Looks whether the lock of the file at `path` is held, without creating the file and
/// without keeping the lock. While it looks it holds the lock for an instant, so a taker
/// trying at that very instant finds it held.
pub(crate) fn probe_lock(path: &Path) -> io::Result<LockState> {
    for _ in 0..LOCK_ATTEMPTS {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockState::Missing),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) if is_at_path(&file, path)? => return Ok(LockState::Free),
            // Removed between our open and our lock: look at the one there now, if any.
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(LockState::Held),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(LockState::Held)
}

/// Whether a server listens on the socket at `path`: a connection to it is taken at once, or
/// would wait because its backlog is full (on Linux; macOS refuses a connection to a full
/// backlog, which then looks like no server). Never waits. A lock file removed from under a live
/// server (an old file of `/tmp` aged out by the system) leaves its name's lock free for the
/// next taker; this tells that the socket is still that server's.
pub(crate) fn socket_answers(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};

    let bytes = path.as_os_str().as_bytes();
    // SAFETY: `sockaddr_un` is plain data, valid when zeroed.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // One byte is left for the terminating zero; a longer path cannot have been bound.
    if bytes.len() >= address.sun_path.len() {
        return false;
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in address.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    // SAFETY: plain system calls; the descriptor is owned (and closed) from here on.
    let socket = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if socket == -1 {
        return false;
    }
    // SAFETY: `socket` is a descriptor just opened and owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    // SAFETY: a descriptor this function owns; the flags are valid for it.
    let blocking = unsafe {
        libc::fcntl(socket.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == -1
            || libc::fcntl(socket.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) == -1
    };
    if blocking {
        return false;
    }
    // The path starts after `sun_family` (and `sun_len` where there is one); its zero counts.
    let length = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: `address` is a valid `sockaddr_un` of at least `length` bytes.
    let connected = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            std::ptr::addr_of!(address).cast::<libc::sockaddr>(),
            length as libc::socklen_t,
        )
    };
    connected == 0
        || matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN | libc::EINPROGRESS)
        )
}
