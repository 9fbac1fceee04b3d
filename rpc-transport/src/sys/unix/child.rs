//! The operating system side of child processes on Unix: pipe pairs passed to a child,
//! inherited descriptors checked and taken, stdio taken for the connection.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_core::PeerInfo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::process::Command;

use crate::child::{BadPipesReason, BoxReader, BoxWriter, End, PIPES_ENV};

/// The child's ends: it reads the first and writes the second.
pub(crate) struct ChildEnds(OwnedFd, OwnedFd);

pub(crate) fn pipe_pairs() -> io::Result<((pipe::Receiver, pipe::Sender), ChildEnds)> {
    // std's pipes are close-on-exec; the child's ends are made inheritable in the child only.
    let (child_read, parent_write) = io::pipe()?;
    let (parent_read, child_write) = io::pipe()?;
    let parent = (
        pipe::Receiver::from_owned_fd(parent_read.into())?,
        pipe::Sender::from_owned_fd(parent_write.into())?,
    );
    Ok((parent, ChildEnds(child_read.into(), child_write.into())))
}

pub(crate) fn pass_to(ends: &ChildEnds, command: &mut Command) -> io::Result<()> {
    let fds = [ends.0.as_raw_fd(), ends.1.as_raw_fd()];
    command.env(PIPES_ENV, format!("{},{}", fds[0], fds[1]));
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which
    // is async-signal-safe, on descriptors that stay open until the child has started.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// A descriptor found to be an open pipe end, not yet taken.
pub(crate) struct Checked(RawFd);

/// Checks, without taking it, that `number` is an open pipe descriptor other than 0 to 2,
/// open for reading or writing as `end` says.
pub(crate) fn check(number: i64, end: End) -> Result<Checked, BadPipesReason> {
    let fd = RawFd::try_from(number).map_err(|_| BadPipesReason::NotOpen)?;
    if fd < 0 {
        return Err(BadPipesReason::NotOpen);
    }
    if fd <= libc::STDERR_FILENO {
        return Err(BadPipesReason::Standard);
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `stat` through the pointer, which is valid for one, and only
    // reads the descriptor's state.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == -1 {
        return Err(BadPipesReason::NotOpen);
    }
    // SAFETY: fstat succeeded, so it filled in `stat`.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(BadPipesReason::NotAPipe);
    }
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(BadPipesReason::NotOpen);
    }
    let right_way = matches!(
        (flags & libc::O_ACCMODE, end),
        (libc::O_RDWR, _) | (libc::O_RDONLY, End::Read) | (libc::O_WRONLY, End::Write)
    );
    if !right_way {
        return Err(BadPipesReason::WrongDirection);
    }
    Ok(Checked(fd))
}

/// Takes ownership of two checked pipe ends, makes them close-on-exec and sets them up for
/// tokio. Once taken, they are closed if setting them up fails.
///
/// # Safety
///
/// Nothing else in the process may own either descriptor, and both must still be open.
pub(crate) unsafe fn take(read: Checked, write: Checked) -> io::Result<(BoxReader, BoxWriter)> {
    // SAFETY: the caller guarantees that both are open and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(read.0), OwnedFd::from_raw_fd(write.0)) };
    for fd in [&read, &write] {
        // SAFETY: F_SETFD only sets the descriptor flags of a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    let reader = pipe::Receiver::from_owned_fd(read)?;
    let writer = pipe::Sender::from_owned_fd(write)?;
    Ok((Box::new(reader), Box::new(writer)))
}

/// Takes stdin and stdout for the connection; standard output now goes to standard error
/// and standard input reads the null device.
pub(crate) fn take_stdio() -> io::Result<(BoxReader, BoxWriter)> {
    let stdout = io::stdout();
    // Held while descriptors move, so no other thread is halfway through a print.
    let mut lock = stdout.lock();
    lock.flush()?;
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = lock.as_fd().try_clone_to_owned()?;
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 between open descriptors; 0, 1 and 2 stay open throughout.
    unsafe {
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) == -1
            || libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    drop(lock);
    Ok((reader(File::from(input))?, writer(File::from(output))?))
}

/// What a standard stream is, for how it is read or written.
enum Kind {
    Pipe,
    Socket,
    /// A file or a terminal, which the reactor cannot wait on.
    Other,
}

fn kind(file: &File) -> Kind {
    match file.metadata().map(|m| m.file_type()) {
        Ok(kind) if kind.is_fifo() => Kind::Pipe,
        Ok(kind) if kind.is_socket() => Kind::Socket,
        _ => Kind::Other,
    }
}

/// A socket (parents built on libuv give their children socket pairs as stdio), waited on by
/// the reactor as a pipe is: a read left under way does not hold the runtime's shutdown.
fn socket(file: File) -> io::Result<tokio::net::UnixStream> {
    let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}

/// A pipe or a socket of the standard streams, made non-blocking for the reactor. That flag
/// belongs to the open file, which other processes may share (a shell that started this one
/// reads it next), so the flags it had are put back when the connection lets it go.
struct Restored<T> {
    inner: T,
    fd: RawFd,
    flags: libc::c_int,
}

impl<T: AsRawFd> Restored<T> {
    /// `make` turns `file` into what the reactor waits on; `file`'s flags from before are kept.
    fn new(file: File, make: impl FnOnce(File) -> io::Result<T>) -> io::Result<Self> {
        // SAFETY: F_GETFL only reads the flags of a descriptor `file` owns.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        if flags == -1 {
            return Err(io::Error::last_os_error());
        }
        let inner = make(file)?;
        let fd = inner.as_raw_fd();
        Ok(Self { inner, fd, flags })
    }
}

impl<T> Drop for Restored<T> {
    fn drop(&mut self) {
        // SAFETY: `fd` is `inner`'s, still open here (fields are dropped after this); F_SETFL
        // only sets its status flags back.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Restored<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Restored<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn reader(file: File) -> io::Result<BoxReader> {
    Ok(match kind(&file) {
        Kind::Pipe => Box::new(Restored::new(file, pipe::Receiver::from_file)?),
        Kind::Socket => Box::new(Restored::new(file, socket)?),
        // Read on tokio's blocking threads: a read under way when the connection ends holds the
        // runtime's shutdown until the file has data or the terminal a line.
        Kind::Other => Box::new(tokio::fs::File::from_std(file)),
    })
}

fn writer(file: File) -> io::Result<BoxWriter> {
    Ok(match kind(&file) {
        Kind::Pipe => Box::new(Restored::new(file, pipe::Sender::from_file)?),
        Kind::Socket => Box::new(Restored::new(file, socket)?),
        Kind::Other => Box::new(tokio::fs::File::from_std(file)),
    })
}

/// The parent process as the peer.
pub(crate) fn parent() -> PeerInfo {
    // SAFETY: neither call has preconditions or can fail.
    let (ppid, uid) = unsafe { (libc::getppid(), libc::geteuid()) };
    PeerInfo::unix(u32::try_from(ppid).ok(), Some(uid))
}
