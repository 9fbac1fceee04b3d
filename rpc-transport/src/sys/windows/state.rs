//! Whether the other end of a pipe is gone, asked of the kernel without reading.

use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::time::Duration;

use windows_sys::Wdk::Storage::FileSystem::{
    FilePipeLocalInformation, NtQueryInformationFile, FILE_PIPE_CLOSING_STATE,
    FILE_PIPE_CONNECTED_STATE, FILE_PIPE_DISCONNECTED_STATE, FILE_PIPE_LOCAL_INFORMATION,
};
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

/// How often a connection that is not reading looks whether its peer has closed the pipe.
const CLOSED_POLL: Duration = Duration::from_millis(20);

/// What the kernel knows of one end of a pipe, if this system answers.
pub(super) fn local_info(pipe: BorrowedHandle<'_>) -> Option<FILE_PIPE_LOCAL_INFORMATION> {
    // SAFETY: both are plain C structs of integers (and a pointer-sized union), for which all
    // zeroes is a valid value.
    let (mut status, mut info): (IO_STATUS_BLOCK, FILE_PIPE_LOCAL_INFORMATION) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: an open handle, and a buffer of the structure's size that the call fills in.
    let result = unsafe {
        NtQueryInformationFile(
            pipe.as_raw_handle(),
            &mut status,
            (&mut info as *mut FILE_PIPE_LOCAL_INFORMATION).cast(),
            std::mem::size_of::<FILE_PIPE_LOCAL_INFORMATION>() as u32,
            FilePipeLocalInformation,
        )
    };
    (result >= 0).then_some(info)
}

/// Whether `pipe` is connected to its other end; `false` if the system does not say.
pub(super) fn is_connected(pipe: BorrowedHandle<'_>) -> bool {
    local_info(pipe).is_some_and(|info| info.NamedPipeState == FILE_PIPE_CONNECTED_STATE)
}

/// Completes once the other end of `pipe` is closed or has disconnected this one, even while
/// messages it wrote wait unread; never, if the system does not report a pipe's state. No event
/// says so: the state is looked at every [`CLOSED_POLL`].
pub(super) async fn other_end_gone(pipe: BorrowedHandle<'_>) {
    loop {
        match local_info(pipe).map(|info| info.NamedPipeState) {
            Some(FILE_PIPE_CLOSING_STATE | FILE_PIPE_DISCONNECTED_STATE) => return,
            Some(_) => tokio::time::sleep(CLOSED_POLL).await,
            None => return std::future::pending().await,
        }
    }
}
