//! Who a pipe belongs to: user SIDs, the pipe's security descriptor, and whether a client may
//! trust the server behind a pipe.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo,
    SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, RevertToSelf, TokenUser, OWNER_SECURITY_INFORMATION, PSID, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_GENERIC_READ, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, OpenProcess, OpenProcessToken, OpenThreadToken,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The SID of the LocalSystem account.
pub(super) const SYSTEM_SID: &str = "S-1-5-18";

/// Access a client asks for and, with `allow_other_users`, what other users are granted:
/// read (which includes `READ_CONTROL`, to read the pipe's owner), write data, and write
/// attributes (to set message read mode). Not FILE_APPEND_DATA, whose value is
/// FILE_CREATE_PIPE_INSTANCE, and so not GENERIC_WRITE either.
pub(super) const CLIENT_ACCESS: u32 = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES;

/// Whether a client running as `own_sid` may trust a pipe owned by `owner_sid`: its own user,
/// or SYSTEM (a Windows service). Everyone else, the administrators group included (the
/// default owner of what an elevated administrator creates, which our servers never leave:
/// they name their user as the owner), is refused.
pub(super) fn trusted_owner(owner_sid: &str, own_sid: &str) -> bool {
    owner_sid == own_sid || owner_sid == SYSTEM_SID
}

/// The security descriptor of every pipe, in SDDL: owned by the server's user; a protected
/// DACL (no inheritance) that denies the network logon and grants full access to that user,
/// SYSTEM and administrators, and read and write-data to authenticated users when opened up.
pub(super) fn pipe_sddl(owner_sid: &str, allow_other_users: bool) -> String {
    let mut sddl =
        format!("O:{owner_sid}D:P(D;;GA;;;NU)(A;;GA;;;{owner_sid})(A;;GA;;;SY)(A;;GA;;;BA)");
    if allow_other_users {
        sddl.push_str(&format!("(A;;{CLIENT_ACCESS:#x};;;AU)"));
    }
    sddl
}

/// A self-relative security descriptor made from SDDL, freed when dropped.
#[derive(Debug)]
pub(super) struct SecurityDescriptor(*mut core::ffi::c_void);

// SAFETY: the descriptor is immutable once built and only read (by CreateNamedPipeW); the
// pointer is freed once, by its owner.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Builds the descriptor that `sddl` describes.
    pub(super) fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated and outlives the call; on success the descriptor is
        // ours and freed with LocalFree in `drop`.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(descriptor))
    }

    /// The descriptor, for a SECURITY_ATTRIBUTES that does not outlive `self`.
    pub(super) fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.0
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// Memory that the system allocated with LocalAlloc, freed when dropped.
struct LocalBox(*mut core::ffi::c_void);

impl Drop for LocalBox {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the system for us with LocalAlloc, freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// The string form (`S-1-5-...`) of a SID.
///
/// # Safety
///
/// `sid` must point to a valid SID for the duration of the call.
unsafe fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid (the caller's promise); on success `text` is a NUL-terminated
    // string that we free (through the `LocalBox`).
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let owned = LocalBox(text.cast());
    // SAFETY: `text` is NUL-terminated, so every index read up to the NUL is inside it.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` u16s before the NUL, alive until `owned` drops after this line.
    let sid = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    drop(owned);
    Ok(sid)
}

/// The owner SID in the security descriptor of the object behind `handle`, which must be
/// open with `READ_CONTROL`.
pub(super) fn owner_sid(handle: BorrowedHandle<'_>) -> io::Result<String> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor = std::ptr::null_mut();
    // SAFETY: an open handle; on success `owner` points into `descriptor`, which the system
    // allocated for us and we free (through the `LocalBox`) after reading the owner.
    let status = unsafe {
        GetSecurityInfo(
            handle.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let descriptor = LocalBox(descriptor);
    if owner.is_null() {
        return Err(io::ErrorKind::NotFound.into());
    }
    // SAFETY: `owner` points into `descriptor`, alive until the end of this function.
    let sid = unsafe { sid_string(owner) };
    drop(descriptor);
    sid
}

/// The user SID of this process.
pub(super) fn own_user_sid() -> io::Result<String> {
    // SAFETY: the pseudo handle of this process needs no closing and is always valid.
    token_user_sid(unsafe { GetCurrentProcess() })
}

/// The user SID of the process with id `pid` (a server reads its client's, for the handlers;
/// it may fail for a process of a more privileged user).
pub(super) fn process_user_sid(pid: u32) -> io::Result<String> {
    // SAFETY: a plain query; a non-null result is an open handle that we own.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `process` is open and nothing else owns it.
    let process = unsafe { OwnedHandle::from_raw_handle(process) };
    token_user_sid(process.as_raw_handle() as HANDLE)
}

/// The user SID of the client connected to the server end `pipe`, whose process id is `pid`:
/// from the connection (see [`client_user_sid`]), else from the process; `None` if neither
/// says.
pub(super) fn peer_user_sid(pipe: BorrowedHandle<'_>, pid: Option<u32>) -> Option<String> {
    client_user_sid(pipe)
        .inspect_err(|error| tracing::debug!(%error, "the client's user, from its connection"))
        .ok()
        .or_else(|| pid.and_then(|pid| process_user_sid(pid).ok()))
}

/// The user SID of the client of the server end `pipe`, from the identity its connection
/// carries (clients connect at the identification level: the server may read who they are,
/// not act as them). Unlike [`process_user_sid`], needs no right on the client's process, and
/// names the user who connected even if the process has gone and its id was reused.
pub(super) fn client_user_sid(pipe: BorrowedHandle<'_>) -> io::Result<String> {
    // SAFETY: `pipe` is an open server end of a named pipe.
    if unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle() as HANDLE) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut token: HANDLE = std::ptr::null_mut();
    // Opened as this process (`OpenAsSelf`), not as the client, who may not query its own
    // identification token through this thread. SAFETY: the pseudo handle of this thread is
    // always valid; on success `token` is an open handle we own.
    let opened = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) } != 0;
    let error = io::Error::last_os_error();
    // SAFETY: no precondition. This thread must not go on as the client: if it cannot stop,
    // the process stops (as the system's documentation prescribes).
    if unsafe { RevertToSelf() } == 0 {
        std::process::abort();
    }
    if !opened {
        return Err(error);
    }
    // SAFETY: `token` is open and nothing else owns it.
    token_sid(&unsafe { OwnedHandle::from_raw_handle(token) })
}

/// The user SID in the token of `process`, an open process handle.
fn token_user_sid(process: HANDLE) -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is open (the caller's); on success `token` is an open handle we own.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `token` is open and nothing else owns it.
    token_sid(&unsafe { OwnedHandle::from_raw_handle(token) })
}

/// The user SID in `token`, open for `TOKEN_QUERY`.
fn token_sid(token: &OwnedHandle) -> io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a size query: no buffer is written, `needed` receives the size.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    // u64 elements keep the buffer aligned for TOKEN_USER.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    let len = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
    // SAFETY: `buf` is writable for `len` bytes and aligned for TOKEN_USER.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            buf.as_mut_ptr().cast(),
            len,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so `buf` starts with a TOKEN_USER whose SID points into
    // `buf`, which lives until the end of this function.
    unsafe {
        let user = &*buf.as_ptr().cast::<TOKEN_USER>();
        sid_string(user.User.Sid)
    }
}
