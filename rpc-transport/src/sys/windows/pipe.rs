//! Creating and opening pipes, and reading and writing them as byte halves.
//!
//! Every pipe is a tokio `NamedPipeServer` or `NamedPipeClient`: registered with the runtime's
//! completion port, read and written with overlapped I/O by mio.
//!
//! Closing: a write the peer has not taken yet stays under way after it returns (it is handed
//! to the system whole). Dropping a pipe cancels what is still under way, so that a peer that
//! never reads cannot keep the pipe, its instance and the unsent bytes alive by keeping its own
//! end open (mio cancels a dropped pipe's reads, not its writes); the writer's close waits first,
//! within its linger, until the last write is done. That wait writes an empty message once no
//! write is under way (the only way to ask), which this crate's readers skip, as they skip any
//! empty message: a peer may write one at any time, and it is not the end of the pipe.

use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, IntoRawHandle, OwnedHandle};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, PipeMode, ServerOptions};
use windows_sys::Win32::Foundation::{ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_OVERLAPPED, SECURITY_IDENTIFICATION};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, SetNamedPipeHandleState, PIPE_READMODE_MESSAGE,
};
use windows_sys::Win32::System::IO::CancelIoEx;

use super::security::SecurityDescriptor;
use super::state::is_connected;

/// The pipe's buffer in each direction, in bytes (what Windows reserves against quota).
pub(super) const PIPE_BUFFER: u32 = 64 * 1024;

/// The read mode a client sets on its end once open. The reader takes the pipe as a byte
/// stream either way; message read mode keeps the pipe as our own peers see it.
pub(super) const CLIENT_READ_MODE: u32 = PIPE_READMODE_MESSAGE;

/// The most one read of a pipe takes: the runtime reads a pipe 64 KiB at a time at most.
pub(super) const READ_MAX: usize = 64 * 1024;

/// One end of a pipe.
#[derive(Debug)]
pub(crate) enum Pipe {
    /// A server instance.
    Server(NamedPipeServer),
    /// A client end.
    Client(NamedPipeClient),
}

impl Pipe {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Pipe::Server(pipe) => pipe.poll_read_ready(cx),
            Pipe::Client(pipe) => pipe.poll_read_ready(cx),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Pipe::Server(pipe) => pipe.try_read(buf),
            Pipe::Client(pipe) => pipe.try_read(buf),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Pipe::Server(pipe) => pipe.poll_write_ready(cx),
            Pipe::Client(pipe) => pipe.poll_write_ready(cx),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Pipe::Server(pipe) => pipe.try_write(buf),
            Pipe::Client(pipe) => pipe.try_write(buf),
        }
    }

    /// The pipe's handle, for queries.
    pub(super) fn handle(&self) -> BorrowedHandle<'_> {
        match self {
            Pipe::Server(pipe) => Self::server_handle(pipe),
            Pipe::Client(pipe) => Self::client_handle(pipe),
        }
    }

    /// A server instance's handle, for queries.
    pub(super) fn server_handle(pipe: &NamedPipeServer) -> BorrowedHandle<'_> {
        // SAFETY: the handle belongs to `pipe`, which stays open for the borrow's lifetime.
        unsafe { BorrowedHandle::borrow_raw(pipe.as_raw_handle()) }
    }

    /// A client end's handle, for queries.
    pub(super) fn client_handle(pipe: &NamedPipeClient) -> BorrowedHandle<'_> {
        // SAFETY: as for `server_handle`.
        unsafe { BorrowedHandle::borrow_raw(pipe.as_raw_handle()) }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // See the module documentation: a write still under way is cancelled, not left to
        // hold the pipe open.
        // SAFETY: the handle is open (the pipe's fields drop after this); cancelling I/O that
        // is under way or none is harmless to mio, which takes every completion back.
        unsafe { CancelIoEx(self.handle().as_raw_handle(), std::ptr::null()) };
    }
}

/// Most empty messages one read skips before it lets other tasks run: a peer that writes
/// nothing but empty messages gets no more of the thread than one that writes data.
const EMPTY_MESSAGES_PER_READ: usize = 16;

/// The read half of a pipe as a byte stream.
#[derive(Debug)]
pub(crate) struct ReadHalf {
    pipe: Arc<Pipe>,
    /// Nothing was read last, with the other end already gone: an empty message it wrote
    /// before more and then left, or the end. The next read tells which.
    nothing_after_close: bool,
}

impl ReadHalf {
    /// The read half of `pipe`.
    pub(super) fn new(pipe: Arc<Pipe>) -> Self {
        Self {
            pipe,
            nothing_after_close: false,
        }
    }
}

/// The write half of a pipe: each write is one pipe message.
#[derive(Debug)]
pub(crate) struct WriteHalf(pub(super) Arc<Pipe>);

/// Whether a read error means the other end closed the pipe.
fn is_end_of_pipe(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(|code| code as u32),
        Some(ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED)
    )
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = self.get_mut();
        let mut empty = 0;
        loop {
            ready!(this.pipe.poll_read_ready(cx))?;
            // Only as much as one read can take is zeroed: the frame reader offers all the room
            // of its buffer each time (megabytes while a large frame arrives), and zeroing it
            // all for every message would let a peer's one-byte messages cost that much each.
            let room = buf.remaining().min(READ_MAX);
            match this.pipe.try_read(buf.initialize_unfilled_to(room)) {
                // An empty message reads as nothing, as the end of the pipe does: the pipe's
                // state tells them apart, or, once the other end is gone, the next read.
                Ok(0) if is_connected(this.pipe.handle()) || !this.nothing_after_close => {
                    this.nothing_after_close = !is_connected(this.pipe.handle());
                    empty += 1;
                    if empty == EMPTY_MESSAGES_PER_READ {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Ok(read) => {
                    this.nothing_after_close = false;
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; `try_read` cleared it, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_end_of_pipe(&e) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Waits until no write is under way (see the module documentation); a pipe cannot
    /// half-close. The empty message it writes for that goes out only once the last write is
    /// done.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(&[]) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Nothing can be delivered any more: there is nothing to wait for.
                Err(e) if is_end_of_pipe(&e) || e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    return Poll::Ready(Ok(()))
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The server's options for every instance of a duplex endpoint pipe: message type and read
/// mode, remote clients rejected, 64 KiB buffers, the first instance exclusive.
pub(super) fn duplex_options(first: bool) -> ServerOptions {
    let mut options = ServerOptions::new();
    options
        .pipe_mode(PipeMode::Message)
        .reject_remote_clients(true)
        .first_pipe_instance(first)
        .in_buffer_size(PIPE_BUFFER)
        .out_buffer_size(PIPE_BUFFER);
    options
}

/// Creates a server instance at `path` with `options` and the security descriptor.
pub(super) fn create(
    options: &ServerOptions,
    path: &str,
    descriptor: &SecurityDescriptor,
) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.as_ptr(),
        bInheritHandle: 0,
    };
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor (owned by
    // `descriptor`) outlives the call; CreateNamedPipeW copies what it needs.
    unsafe {
        options.create_with_security_attributes_raw(
            path,
            (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
        )
    }
}

/// Opens a client end of the pipe at `path` with `access` (which must include
/// `FILE_WRITE_ATTRIBUTES`), the server allowed to identify but not impersonate the client,
/// and sets message read mode.
pub(super) fn open(path: &str, access: u32) -> io::Result<NamedPipeClient> {
    let file = std::fs::OpenOptions::new()
        .access_mode(access)
        .share_mode(0)
        .custom_flags(FILE_FLAG_OVERLAPPED)
        // std adds SECURITY_SQOS_PRESENT.
        .security_qos_flags(SECURITY_IDENTIFICATION)
        .open(path)?;
    let handle = OwnedHandle::from(file);
    let mode = CLIENT_READ_MODE;
    // SAFETY: a pipe client handle, open for the call, opened with FILE_WRITE_ATTRIBUTES; the
    // mode is read from a live local.
    let set = unsafe {
        SetNamedPipeHandleState(
            handle.as_raw_handle(),
            &mode,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if set == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is an open pipe handle opened for overlapped I/O, and ownership moves
    // to the `NamedPipeClient` (which closes it, also when registering fails).
    unsafe { NamedPipeClient::from_raw_handle(handle.into_raw_handle()) }
}

/// The process id of the client connected to a server instance, if the system says.
pub(super) fn client_process_id(pipe: &NamedPipeServer) -> Option<u32> {
    let mut pid = 0u32;
    // SAFETY: a connected server instance's handle, open for the call; `pid` is a live local.
    let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut pid) };
    (ok != 0).then_some(pid)
}
