//! The operating system side of child processes on Windows: pipe pairs passed to a child,
//! inherited handles checked and taken, stdio taken for the connection.

use std::fs::File;
use std::io::{self, Write};
use std::os::windows::io::{
    AsRawHandle, BorrowedHandle, FromRawHandle, IntoRawHandle, OwnedHandle, RawHandle,
};

use rpc_core::PeerInfo;
use tokio::process::Command;
use windows_sys::Win32::Foundation::{
    GetHandleInformation, SetHandleInformation, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Console::{
    GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};

use crate::child::{BadPipesReason, BoxReader, BoxWriter, End, PIPES_ENV};

/// The child's ends: it reads the first and writes the second.
pub(crate) struct ChildEnds(OwnedHandle, OwnedHandle);

type ParentEnds = (tokio::fs::File, tokio::fs::File);

pub(crate) fn pipe_pairs() -> io::Result<(ParentEnds, ChildEnds)> {
    // Anonymous pipes are synchronous: the parent's ends are read and written on tokio's
    // blocking threads.
    let (child_read, parent_write) = io::pipe()?;
    let (parent_read, child_write) = io::pipe()?;
    let parent = (
        tokio::fs::File::from_std(File::from(OwnedHandle::from(parent_read))),
        tokio::fs::File::from_std(File::from(OwnedHandle::from(parent_write))),
    );
    Ok((parent, ChildEnds(child_read.into(), child_write.into())))
}

fn set_inheritable(handle: RawHandle, inherit: bool) -> io::Result<()> {
    let flags = if inherit { HANDLE_FLAG_INHERIT } else { 0 };
    // SAFETY: the handle is open (owned by the caller).
    if unsafe { SetHandleInformation(handle as HANDLE, HANDLE_FLAG_INHERIT, flags) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn pass_to(ends: &ChildEnds, command: &mut Command) -> io::Result<()> {
    // std starts children with handle inheritance on; only inheritable handles pass.
    set_inheritable(ends.0.as_raw_handle(), true)?;
    set_inheritable(ends.1.as_raw_handle(), true)?;
    command.env(
        PIPES_ENV,
        format!(
            "{},{}",
            ends.0.as_raw_handle() as usize,
            ends.1.as_raw_handle() as usize
        ),
    );
    Ok(())
}

/// A handle found to be an open pipe, not yet taken.
pub(crate) struct Checked(RawHandle);

/// Checks, without taking it, that `number` is an open pipe handle other than the standard
/// handles. Which way the pipe is open is not checked here: a wrong one fails the first
/// read or write.
pub(crate) fn check(number: i64, _end: End) -> Result<Checked, BadPipesReason> {
    let raw = usize::try_from(number).map_err(|_| BadPipesReason::NotOpen)? as HANDLE;
    if raw.is_null() || raw == INVALID_HANDLE_VALUE {
        return Err(BadPipesReason::NotOpen);
    }
    let standard = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE];
    // SAFETY: GetStdHandle only reads the process's standard handle slots.
    if standard
        .into_iter()
        .any(|slot| unsafe { GetStdHandle(slot) } == raw)
    {
        return Err(BadPipesReason::Standard);
    }
    let mut flags = 0;
    // SAFETY: GetHandleInformation only reads the handle's flags into `flags`; for a value
    // that is not an open handle it fails and changes nothing.
    if unsafe { GetHandleInformation(raw, &mut flags) } == 0 {
        return Err(BadPipesReason::NotOpen);
    }
    // SAFETY: GetFileType only queries the handle, which is open. It fails for a handle to
    // something that is not a file (a thread, an event...): that is not a pipe either.
    if unsafe { GetFileType(raw) } == FILE_TYPE_PIPE {
        Ok(Checked(raw))
    } else {
        Err(BadPipesReason::NotAPipe)
    }
}

/// Takes ownership of two checked pipe handles and makes them not inheritable. Once taken,
/// they are closed if that fails.
///
/// # Safety
///
/// Nothing else in the process may own either handle, and both must still be open.
pub(crate) unsafe fn take(read: Checked, write: Checked) -> io::Result<(BoxReader, BoxWriter)> {
    // SAFETY: the caller guarantees that both are open and owned by nothing else.
    let (read, write) = unsafe {
        (
            OwnedHandle::from_raw_handle(read.0),
            OwnedHandle::from_raw_handle(write.0),
        )
    };
    for handle in [&read, &write] {
        set_inheritable(handle.as_raw_handle(), false)?;
    }
    Ok((
        Box::new(tokio::fs::File::from_std(File::from(read))),
        Box::new(tokio::fs::File::from_std(File::from(write))),
    ))
}

/// Takes stdin and stdout for the connection; standard output now goes to standard error
/// and standard input is absent (reads see end-of-file).
pub(crate) fn take_stdio() -> io::Result<(BoxReader, BoxWriter)> {
    let stdout = io::stdout();
    // Held while the handles move, so no other thread is halfway through a print.
    let mut lock = stdout.lock();
    lock.flush()?;
    // SAFETY: GetStdHandle only reads the process's standard handle slots.
    let (input, output) = unsafe {
        (
            GetStdHandle(STD_INPUT_HANDLE),
            GetStdHandle(STD_OUTPUT_HANDLE),
        )
    };
    for handle in [input, output] {
        if handle.is_null() || handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "stdin or stdout is not open",
            ));
        }
    }
    // Our own duplicates: the C runtime's descriptors 0 and 1 wrap the originals, and
    // pointing those descriptors elsewhere (below) closes the originals.
    // SAFETY: both are open handles of this process (checked above), borrowed only for the
    // duplication.
    let (input, output) = unsafe {
        (
            BorrowedHandle::borrow_raw(input as RawHandle).try_clone_to_owned()?,
            BorrowedHandle::borrow_raw(output as RawHandle).try_clone_to_owned()?,
        )
    };
    // Standard input reads the null device from now on (end of file at once), as on Unix, also
    // for processes started with inherited handles; the slot owns the handle from then on.
    let nul = std::fs::OpenOptions::new().read(true).open("NUL")?;
    // SAFETY: SetStdHandle only replaces the process's standard handle slots; std looks the
    // handles up on every write, so prints follow the new ones. `nul` is an open handle whose
    // ownership passes to the slot.
    unsafe {
        if SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE)) == 0
            || SetStdHandle(STD_INPUT_HANDLE, nul.into_raw_handle() as HANDLE) == 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    redirect_c_runtime();
    drop(lock);
    Ok((
        Box::new(tokio::fs::File::from_std(File::from(input))),
        Box::new(tokio::fs::File::from_std(File::from(output))),
    ))
}

/// Points the C runtime's descriptor 1 at its descriptor 2 (or at `NUL` if there is no 2), and
/// its descriptor 0 at `NUL`: the C runtime keeps descriptors of its own, set from the standard
/// handles when the process started, which `SetStdHandle` does not move, so C code (`printf`)
/// would otherwise still write into the connection. Output the C runtime buffered before this
/// goes to the new descriptor 1 when it is flushed.
fn redirect_c_runtime() {
    // SAFETY: `_open`, `_dup2` and `_close` only change the C runtime's descriptor table, which
    // is locked inside each call; the path is a NUL-terminated string. The descriptors they
    // close wrap handles that this process no longer uses (we hold duplicates).
    unsafe {
        let nul = libc::open(c"NUL".as_ptr(), libc::O_RDWR);
        if libc::dup2(2, 1) != 0 && (nul < 0 || libc::dup2(nul, 1) != 0) {
            tracing::warn!("the C runtime's standard output still goes to the connection");
        }
        if nul >= 0 {
            if libc::dup2(nul, 0) != 0 {
                tracing::debug!("the C runtime's standard input is left as it was");
            }
            libc::close(nul);
        }
    }
}

/// The parent process as the peer (its id is not looked up on Windows).
pub(crate) fn parent() -> PeerInfo {
    PeerInfo::unknown()
}
