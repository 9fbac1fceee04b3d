//! Windows named pipes in message mode.
//!
//! * The name `calculator` maps to `\\.\pipe\rpc-calculator`.
//! * Both ends use message mode (type and read mode); each frame is one pipe message and still
//!   carries its length, because tokio reads message pipes through 4 KiB and 64 KiB buffers
//!   and hands a long message over in pieces.
//! * The server always keeps one instance waiting: the next instance is created before a
//!   connected one is handed off, so clients never see "all instances busy" while there is room.
//! * The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so another process
//!   cannot squat the name, and remote clients are rejected.
//! * The pipe's DACL grants full access to the server's own user, SYSTEM and the administrators
//!   and denies the NETWORK logon; with `allow_other_users`, authenticated users get read and
//!   write-data access (not `FILE_CREATE_PIPE_INSTANCE`, which `GENERIC_WRITE` would include).
//! * Clients open the pipe with `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION` (the server
//!   cannot impersonate them), ask for read, write-data and write-attributes access only, and
//!   check that the server process runs as their own user or SYSTEM before sending anything.

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, RawHandle};
use std::time::{Duration, Instant};

use rpc_core::frame::{FrameRead, FrameReader, FrameWrite, FrameWriter};
use rpc_core::{ConnectError, PeerInfo};
use tokio::net::windows::named_pipe::{
    NamedPipeClient, NamedPipeServer, PipeMode, ServerOptions as PipeOptions,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_GENERIC_READ, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA,
    OPEN_EXISTING, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeServerProcessId, SetNamedPipeHandleState,
    PIPE_READMODE_MESSAGE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use crate::endpoint::Endpoint;
use crate::server::{BindError, ServerOptions};
use crate::ClientOptions;

/// The SID of the LocalSystem account.
const SYSTEM_SID: &str = "S-1-5-18";

/// Access a client asks for and, with `allow_other_users`, what other users are granted:
/// read, write data, and write attributes (to set message read mode). Not FILE_APPEND_DATA,
/// whose value is FILE_CREATE_PIPE_INSTANCE.
const CLIENT_ACCESS: u32 = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES;

/// The most instances a named pipe can have without being unlimited. One instance is always
/// waiting, so this serves up to 253 clients at once.
const MAX_INSTANCES: usize = 254;

/// Default wait while every instance is busy.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn pipe_path(endpoint: &Endpoint) -> String {
    format!(r"\\.\pipe\rpc-{}", endpoint.name())
}

fn wide(s: &str) -> Vec<u16> {
    OsStr::new(s).encode_wide().chain(Some(0)).collect()
}

/// Closes a handle when dropped.
struct OwnedHandle(HANDLE);

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The user SID (string form) of the process with id `pid`, or of this process.
fn process_user_sid(pid: Option<u32>) -> io::Result<String> {
    // SAFETY: plain Win32 calls on handles we own; buffers are sized by the API's answer.
    unsafe {
        let process = match pid {
            Some(pid) => {
                let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
                if h.is_null() {
                    return Err(io::Error::last_os_error());
                }
                Some(OwnedHandle(h))
            }
            None => None,
        };
        let process_handle = process
            .as_ref()
            .map_or_else(|| GetCurrentProcess(), |h| h.0);
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(process_handle, TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = OwnedHandle(token);
        let mut needed = 0u32;
        GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut needed);
        // u64 elements keep the buffer aligned for TOKEN_USER.
        let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
        if GetTokenInformation(
            token.0,
            TokenUser,
            buf.as_mut_ptr().cast(),
            needed,
            &mut needed,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let user = &*(buf.as_ptr().cast::<TOKEN_USER>());
        let mut string_sid: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut string_sid) == 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (0..).take_while(|&i| *string_sid.add(i) != 0).count();
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(string_sid, len));
        LocalFree(string_sid.cast());
        Ok(sid)
    }
}

/// The DACL of the pipe, in SDDL: protected (no inheritance), deny the network logon, full
/// access to the owner user, SYSTEM and administrators; read and write-data to authenticated
/// users when opened up.
pub(crate) fn pipe_sddl(owner_sid: &str, allow_other_users: bool) -> String {
    let mut sddl = format!("D:P(D;;GA;;;NU)(A;;GA;;;{owner_sid})(A;;GA;;;SY)(A;;GA;;;BA)");
    if allow_other_users {
        sddl.push_str(&format!("(A;;{CLIENT_ACCESS:#x};;;AU)"));
    }
    sddl
}

/// A security descriptor made from SDDL, freed when dropped.
struct SecurityDescriptor(*mut core::ffi::c_void);

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> io::Result<Self> {
        let mut sd = std::ptr::null_mut();
        // SAFETY: the string is NUL-terminated; the descriptor is freed with LocalFree.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide(sddl).as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(sd))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

// SAFETY: the descriptor is immutable once built and only read by CreateNamedPipeW.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above.
unsafe impl Sync for SecurityDescriptor {}

/// A named-pipe server that always has one instance waiting for a client.
pub(crate) struct Listener {
    path: String,
    options: PipeOptions,
    descriptor: SecurityDescriptor,
    waiting: NamedPipeServer,
    max_frame: u32,
}

impl Listener {
    fn create(&self, first: bool) -> io::Result<NamedPipeServer> {
        create_instance(&self.path, &self.options, &self.descriptor, first)
    }

    pub(crate) fn bind(endpoint: &Endpoint, options: &ServerOptions) -> Result<Self, BindError> {
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };
        let path = pipe_path(endpoint);
        let owner = process_user_sid(None).map_err(io_err)?;
        let descriptor =
            SecurityDescriptor::from_sddl(&pipe_sddl(&owner, options.allow_other_users))
                .map_err(io_err)?;
        let mut pipe_options = PipeOptions::new();
        pipe_options
            .pipe_mode(PipeMode::Message)
            .reject_remote_clients(true)
            .access_inbound(true)
            .access_outbound(true)
            .max_instances(options.max_connections.saturating_add(1).min(MAX_INSTANCES));
        let waiting = match create_instance(&path, &pipe_options, &descriptor, true) {
            Ok(pipe) => pipe,
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                return Err(BindError::AddrInUse { name })
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(Self {
            path,
            options: pipe_options,
            descriptor,
            waiting,
            max_frame: options.config.max_frame,
        })
    }

    pub(crate) fn address(&self) -> String {
        self.path.clone()
    }

    pub(crate) async fn accept(
        &mut self,
    ) -> io::Result<(impl FrameRead, impl FrameWrite, PeerInfo)> {
        if let Err(error) = self.waiting.connect().await {
            // A client that connected and left before being accepted leaves the instance in the
            // closing state (ERROR_NO_DATA): disconnect it so it listens again, or every later
            // accept would fail on it.
            let _ = self.waiting.disconnect();
            return Err(error);
        }
        // Create the next instance before handing this one off: one is always waiting.
        let next = self.create(false)?;
        let connected = std::mem::replace(&mut self.waiting, next);
        let mut pid = 0u32;
        // SAFETY: the handle is a connected pipe server instance.
        let pid = (unsafe { GetNamedPipeClientProcessId(connected.as_raw_handle(), &mut pid) }
            != 0)
            .then_some(pid);
        let sid = pid.and_then(|p| process_user_sid(Some(p)).ok());
        let (read, write) = tokio::io::split(connected);
        Ok((
            FrameReader::with_max_frame(read, self.max_frame),
            FrameWriter::messages(write),
            PeerInfo::windows(pid, sid),
        ))
    }
}

fn create_instance(
    path: &str,
    options: &PipeOptions,
    descriptor: &SecurityDescriptor,
    first: bool,
) -> io::Result<NamedPipeServer> {
    let mut options = options.clone();
    options.first_pipe_instance(first);
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    // SAFETY: the attributes and the descriptor they point to outlive the call.
    unsafe {
        options.create_with_security_attributes_raw(
            path,
            (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
        )
    }
}

pub(crate) fn is_transient_accept_error(error: &io::Error) -> bool {
    // A client that connects and vanishes before the server sees it.
    matches!(error.raw_os_error(), Some(232 | 109 | 535))
}

pub(crate) async fn termination_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Whether a server running as `server_sid` may be trusted by a client running as `own_sid`.
pub(crate) fn trusted_server(server_sid: &str, own_sid: &str) -> bool {
    server_sid == own_sid || server_sid == SYSTEM_SID
}

fn open_client(path: &str) -> io::Result<NamedPipeClient> {
    let wide_path = wide(path);
    // SAFETY: plain CreateFileW; the handle is handed to tokio, which owns it from then on.
    unsafe {
        let handle = CreateFileW(
            wide_path.as_ptr(),
            CLIENT_ACCESS,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            std::ptr::null_mut(),
        );
        if handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        let mode = PIPE_READMODE_MESSAGE;
        if SetNamedPipeHandleState(handle, &mode, std::ptr::null(), std::ptr::null()) == 0 {
            let error = io::Error::last_os_error();
            CloseHandle(handle);
            return Err(error);
        }
        NamedPipeClient::from_raw_handle(handle as RawHandle)
    }
}

pub(crate) async fn connect(
    endpoint: &Endpoint,
    options: &ClientOptions,
) -> Result<(impl FrameRead, impl FrameWrite), ConnectError> {
    let path = pipe_path(endpoint);
    let shown = || path.clone();
    let give_up = Instant::now() + options.busy_timeout.unwrap_or(DEFAULT_BUSY_TIMEOUT);
    let client = loop {
        match open_client(&path) {
            Ok(client) => break client,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                if Instant::now() >= give_up {
                    return Err(ConnectError::Busy { endpoint: shown() });
                }
                // Every instance is taken; the server creates the next one as soon as it hands
                // one off. Poll briefly, within the bounded wait.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => {
                return Err(ConnectError::NotFound { endpoint: shown() })
            }
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                return Err(ConnectError::PermissionDenied { endpoint: shown() })
            }
            Err(e) => {
                return Err(ConnectError::Io {
                    endpoint: shown(),
                    source: e.into(),
                })
            }
        }
    };
    let io_err = |e: io::Error| ConnectError::Io {
        endpoint: shown(),
        source: e.into(),
    };
    let mut server_pid = 0u32;
    // SAFETY: the handle is a connected pipe client.
    if unsafe { GetNamedPipeServerProcessId(client.as_raw_handle(), &mut server_pid) } == 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    let own = process_user_sid(None).map_err(io_err)?;
    let server = process_user_sid(Some(server_pid)).map_err(io_err)?;
    if !trusted_server(&server, &own) {
        return Err(ConnectError::UntrustedServer {
            endpoint: shown(),
            expected: format!("{own} or SYSTEM"),
            actual: server,
        });
    }
    let (read, write) = tokio::io::split(client);
    Ok((
        FrameReader::with_max_frame(read, options.config.max_frame),
        FrameWriter::messages(write),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_or_system_is_trusted() {
        let me = "S-1-5-21-1-2-3-1001";
        assert!(trusted_server(me, me));
        assert!(trusted_server(SYSTEM_SID, me));
        assert!(!trusted_server("S-1-5-21-1-2-3-1002", me));
        assert!(
            !trusted_server("S-1-5-32-544", me),
            "administrators group is not a user"
        );
    }

    #[test]
    fn dacl_grants_owner_system_admins_and_denies_network() {
        let sddl = pipe_sddl("S-1-5-21-9", false);
        assert_eq!(
            sddl,
            "D:P(D;;GA;;;NU)(A;;GA;;;S-1-5-21-9)(A;;GA;;;SY)(A;;GA;;;BA)"
        );
        let open = pipe_sddl("S-1-5-21-9", true);
        assert!(open.ends_with("(A;;0x12018b;;;AU)"), "{open}");
    }

    /// Whether this runs under Wine, which does not enforce every pipe security setting.
    fn under_wine() -> bool {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: looking up an export by name; nothing is called.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    fn unique_endpoint(tag: &str) -> Endpoint {
        Endpoint::new(&format!("unit-{tag}-{}", std::process::id())).expect("name")
    }

    /// Reads the DACL of the pipe back through a client handle, as SDDL.
    fn read_back_dacl(path: &str) -> String {
        use windows_sys::Win32::Security::Authorization::{
            ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SE_KERNEL_OBJECT,
        };
        use windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
        use windows_sys::Win32::Storage::FileSystem::READ_CONTROL;
        let wide_path = wide(path);
        // SAFETY: plain Win32 calls; every handle and buffer is released before returning.
        unsafe {
            let handle = CreateFileW(
                wide_path.as_ptr(),
                READ_CONTROL | FILE_GENERIC_READ,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                0,
                std::ptr::null_mut(),
            );
            assert!(
                handle != INVALID_HANDLE_VALUE,
                "open: {}",
                io::Error::last_os_error()
            );
            let handle = OwnedHandle(handle);
            let mut sd = std::ptr::null_mut();
            let status = GetSecurityInfo(
                handle.0,
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut sd,
            );
            assert_eq!(status, 0, "GetSecurityInfo");
            let mut text: *mut u16 = std::ptr::null_mut();
            let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                std::ptr::null_mut(),
            );
            assert_ne!(
                ok, 0,
                "ConvertSecurityDescriptorToStringSecurityDescriptorW"
            );
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            let sddl = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast());
            LocalFree(sd);
            sddl
        }
    }

    /// The ACEs of an SDDL DACL, as `(type, rights, sid)`.
    fn aces(sddl: &str) -> Vec<(String, String, String)> {
        sddl.split('(')
            .skip(1)
            .map(|ace| {
                let fields: Vec<&str> = ace.trim_end_matches(')').split(';').collect();
                let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_owned();
                (field(0), field(2), field(5))
            })
            .collect()
    }

    #[tokio::test]
    async fn pipe_dacl_is_set_and_reads_back() {
        let owner = process_user_sid(None).expect("own sid");
        for allow_other_users in [false, true] {
            let endpoint = unique_endpoint(if allow_other_users {
                "dacl-open"
            } else {
                "dacl"
            });
            let options = ServerOptions {
                allow_other_users,
                ..ServerOptions::default()
            };
            let listener = Listener::bind(&endpoint, &options).expect("bind");
            let sddl = read_back_dacl(&listener.address());
            println!("pipe DACL read back (allow_other_users = {allow_other_users}): {sddl}");
            assert!(sddl.starts_with("D:P"), "DACL must be protected: {sddl}");
            let aces = aces(&sddl);
            let sids: Vec<&str> = aces.iter().map(|(_, _, sid)| sid.as_str()).collect();
            assert_eq!(
                aces.first().map(|(t, _, s)| (t.as_str(), s.as_str())),
                Some(("D", "NU")),
                "{sddl}"
            );
            for expected in [owner.as_str(), "SY", "BA"] {
                assert!(
                    aces.iter().any(|(t, _, sid)| t == "A" && sid == expected),
                    "no allow ACE for {expected}: {sddl}"
                );
            }
            assert!(
                !sids.contains(&"WD"),
                "Everyone must not be granted: {sddl}"
            );
            assert!(
                !sids.contains(&"AN"),
                "anonymous must not be granted: {sddl}"
            );
            let other_users: Vec<_> = aces.iter().filter(|(_, _, sid)| sid == "AU").collect();
            if allow_other_users {
                assert_eq!(other_users.len(), 1, "{sddl}");
                let rights = &other_users[0].1;
                let mask = u32::from_str_radix(rights.trim_start_matches("0x"), 16)
                    .unwrap_or_else(|_| panic!("rights {rights} not a plain mask"));
                assert_eq!(mask, CLIENT_ACCESS);
                assert_eq!(
                    mask & 0x4,
                    0,
                    "FILE_CREATE_PIPE_INSTANCE (FILE_APPEND_DATA) granted"
                );
            } else {
                assert!(other_users.is_empty(), "{sddl}");
                assert_eq!(aces.len(), 4, "{sddl}");
            }
        }
    }

    #[tokio::test]
    async fn second_server_on_a_live_name_cannot_squat_it() {
        let endpoint = unique_endpoint("squat");
        let first = Listener::bind(&endpoint, &ServerOptions::default()).expect("bind");
        match Listener::bind(&endpoint, &ServerOptions::default()) {
            Err(BindError::AddrInUse { .. }) => {}
            Ok(_) if under_wine() => println!(
                "NOT CONFIRMED: Wine does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE; a second \
                 server on a live name succeeded here and would fail on Windows"
            ),
            Ok(_) => panic!("a second server took the live name {}", first.address()),
            Err(other) => panic!("expected AddrInUse, got {other:?}"),
        }
    }
}
