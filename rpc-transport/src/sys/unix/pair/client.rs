//! The client of a FIFO pair: `connect`.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_core::frame::{FrameReader, FrameWriter};
use rpc_core::{Client, ClientConfig};
use tokio::io::AsyncWrite;
use tokio::net::unix::pipe;

use super::{client_lock_path, open_flags, paths, session_lock_path, RETRY};
use crate::endpoint::Endpoint;
use crate::error::{ConnectError, UnsafeDirectory, User};
use crate::sys::{
    check_private_dir, default_dir, euid, probe_lock, trusted_server, HeldLock, LockState,
};

/// A pipe end that also keeps the client lock for as long as the connection lives; dropping
/// it removes the lock file and releases the lock.
struct Locked<T> {
    inner: T,
    _lock: HeldLock,
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Locked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connects to the FIFO pair served on `endpoint`.
///
/// # Errors
///
/// [`ConnectError::NotFound`] if no server serves the name, [`ConnectError::Busy`] if another
/// client stayed connected for [`ClientConfig::connect_timeout`] (default 5 s),
/// [`ConnectError::UntrustedServer`] if the FIFOs belong
/// to another user, [`ConnectError::InsecureDirectory`] for a directory open to others or a
/// FIFO path that is a symbolic link; otherwise as [`crate::connect`].
pub async fn connect<C: Client>(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<C, ConnectError> {
    let me = euid();
    let dir = endpoint.dir().map_or_else(default_dir, Path::to_path_buf);
    check_private_dir(&dir, &[me, 0])?;
    let name = endpoint.name();
    let (input, output) = paths(&dir, name);
    let shown = input.display().to_string();
    let io_err = |e: io::Error| ConnectError::Io {
        endpoint: shown.clone(),
        source: e.into(),
    };
    let open_err = |e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => ConnectError::NotFound {
            endpoint: shown.clone(),
        },
        Some(libc::ELOOP) => ConnectError::InsecureDirectory {
            path: shown.clone(),
            reason: UnsafeDirectory::EndpointIsSymlink,
        },
        Some(libc::EACCES) => ConnectError::PermissionDenied {
            endpoint: shown.clone(),
        },
        _ => io_err(e),
    };

    // One client at a time: bytes of two writers would mix in the FIFO. A client that is
    // leaving still holds the lock for a moment, so wait for it within the busy timeout.
    let deadline = tokio::time::Instant::now() + config.get_connect_timeout();
    let client_lock = client_lock_path(&dir, name);
    let lock = loop {
        if let Some(lock) = HeldLock::try_acquire(&client_lock).map_err(io_err)? {
            break lock;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ConnectError::Busy { endpoint: shown });
        }
        tokio::time::sleep(RETRY).await;
    };

    // Wait until the previous client's connection is closed on the server's side too. The
    // server creates this lock file when it binds and removes it when it stops.
    let session_lock = session_lock_path(&dir, name);
    loop {
        match probe_lock(&session_lock).map_err(io_err)? {
            LockState::Free => break,
            LockState::Missing => return Err(ConnectError::NotFound { endpoint: shown }),
            LockState::Held => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ConnectError::Busy { endpoint: shown });
        }
        tokio::time::sleep(RETRY).await;
    }

    // Our reading end first (never blocks), so the server can open its writing end.
    let from_server = OpenOptions::new()
        .read(true)
        .custom_flags(open_flags())
        .open(&output)
        .map_err(open_err)?;
    let meta = from_server.metadata().map_err(io_err)?;
    if !meta.file_type().is_fifo() {
        return Err(io_err(io::Error::other("not a FIFO")));
    }
    if !trusted_server(meta.uid(), me) {
        return Err(ConnectError::UntrustedServer {
            endpoint: shown.clone(),
            expected: User::Uid(me),
            actual: User::Uid(meta.uid()),
        });
    }

    // Then the server's reading end. It is closed only between two clients, briefly; with no
    // server at all (the name's lock is free) there is nothing to wait for.
    let to_server = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(open_flags())
            .open(&input)
        {
            Ok(file) => break file,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                let server_alive = matches!(
                    probe_lock(&dir.join(format!("{name}.lock"))),
                    Ok(LockState::Held)
                );
                if !server_alive {
                    return Err(ConnectError::NotFound { endpoint: shown });
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ConnectError::Busy { endpoint: shown });
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(open_err(e)),
        }
    };
    let reader = pipe::Receiver::from_file(from_server).map_err(io_err)?;
    let writer = pipe::Sender::from_file(to_server).map_err(io_err)?;
    let writer = Locked {
        inner: writer,
        _lock: lock,
    };
    Ok(rpc_core::connect(FrameReader::new(reader), FrameWriter::new(writer), config).await?)
}
