//! The identity checks and the security descriptor, decided and read back from live pipes.

use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;

use rpc_core::{ClientConfig, ServerConfig};
use windows_sys::Win32::Foundation::{LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION};
use windows_sys::Win32::Storage::FileSystem::{FILE_GENERIC_READ, READ_CONTROL};

use super::{connected_pair, handle, under_wine, unique_endpoint};
use crate::error::{BindError, ConnectError};
use crate::sys::windows::pair::{pair_paths, PairListener, PAIR_READ_ACCESS, PAIR_WRITE_ACCESS};
use crate::sys::windows::security::{
    own_user_sid, owner_sid, pipe_sddl, trusted_owner, CLIENT_ACCESS, SYSTEM_SID,
};
use crate::sys::windows::{connect, Listener};
use crate::windows::EndpointExt;

#[test]
fn only_a_pipe_of_the_same_user_or_system_is_trusted() {
    let me = "S-1-5-21-1-2-3-1001";
    assert!(trusted_owner(me, me), "the client's own user");
    assert!(
        trusted_owner(SYSTEM_SID, me),
        "a service running as SYSTEM, which a standard user cannot open the token of"
    );
    assert!(!trusted_owner("S-1-5-21-1-2-3-1002", me), "another user");
    assert!(
        !trusted_owner("S-1-5-32-544", me),
        "the administrators group is not a user"
    );
    assert!(
        !trusted_owner("S-1-5-19", me),
        "LOCAL SERVICE is not SYSTEM"
    );
    assert!(
        !trusted_owner("S-1-5-21-1-2-3-100", me),
        "a prefix of the SID"
    );
}

#[test]
fn descriptor_names_the_owner_and_grants_owner_system_admins_and_denies_network() {
    let sddl = pipe_sddl("S-1-5-21-9", false);
    assert_eq!(
        sddl,
        "O:S-1-5-21-9D:P(D;;GA;;;NU)(A;;GA;;;S-1-5-21-9)(A;;GA;;;SY)(A;;GA;;;BA)"
    );
    let open = pipe_sddl("S-1-5-21-9", true);
    assert!(open.ends_with("(A;;0x12018b;;;AU)"), "{open}");
}

#[test]
fn client_access_is_pinned() {
    use windows_sys::Win32::Foundation::{GENERIC_ALL, GENERIC_READ, GENERIC_WRITE};
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_APPEND_DATA, FILE_CREATE_PIPE_INSTANCE, FILE_READ_DATA, FILE_WRITE_ATTRIBUTES,
        FILE_WRITE_DATA, WRITE_DAC, WRITE_OWNER,
    };
    assert_eq!(CLIENT_ACCESS, 0x0012_018b);
    assert_eq!(CLIENT_ACCESS & FILE_READ_DATA, FILE_READ_DATA);
    assert_eq!(
        CLIENT_ACCESS & READ_CONTROL,
        READ_CONTROL,
        "to read the owner"
    );
    assert_eq!(
        PAIR_WRITE_ACCESS & READ_CONTROL,
        READ_CONTROL,
        "to read the owner"
    );
    assert_eq!(
        PAIR_READ_ACCESS & READ_CONTROL,
        READ_CONTROL,
        "to read the owner"
    );
    assert_eq!(CLIENT_ACCESS & FILE_WRITE_DATA, FILE_WRITE_DATA);
    assert_eq!(CLIENT_ACCESS & FILE_WRITE_ATTRIBUTES, FILE_WRITE_ATTRIBUTES);
    assert_eq!(FILE_APPEND_DATA, FILE_CREATE_PIPE_INSTANCE);
    for access in [CLIENT_ACCESS, PAIR_WRITE_ACCESS, PAIR_READ_ACCESS] {
        assert_eq!(
            access & FILE_CREATE_PIPE_INSTANCE,
            0,
            "clients could create instances"
        );
        assert_eq!(access & (GENERIC_READ | GENERIC_WRITE | GENERIC_ALL), 0);
        assert_eq!(access & (WRITE_DAC | WRITE_OWNER), 0);
    }
}

/// Reads the owner and DACL of the pipe at `path` back through a client handle opened with
/// `access` (and `READ_CONTROL`), as SDDL.
fn read_back(path: &str, access: u32) -> String {
    let file = std::fs::OpenOptions::new()
        .access_mode(READ_CONTROL | access)
        .share_mode(0)
        .open(path)
        .map_err(|e| e.to_string())
        .expect("open");
    let info = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    // SAFETY: plain Win32 calls on an open handle; the descriptor and the text the system
    // allocates are freed before returning.
    unsafe {
        let mut sd = std::ptr::null_mut();
        let status = GetSecurityInfo(
            file.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            info,
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
            info,
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
    let dacl = sddl.split_once("D:").map_or("", |(_, dacl)| dacl);
    dacl.split('(')
        .skip(1)
        .map(|ace| {
            let fields: Vec<&str> = ace.trim_end_matches(')').split(';').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_owned();
            (field(0), field(2), field(5))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_sid_read_back_from_a_live_pipe() {
    let own = own_user_sid().expect("own sid");
    let ((_server_reader, _server_writer), (client_reader, _client_writer), _listener) =
        connected_pair("owner").await;
    // What the client checks before sending anything: the owner in the pipe's descriptor.
    let owner = owner_sid(handle(&client_reader)).expect("the pipe's owner");
    println!("pipe owner read back by the client: {owner} (own user {own})");
    assert_eq!(owner, own);
    assert!(trusted_owner(&owner, &own));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_owned_by_another_user_is_refused_before_anything_is_sent() {
    // A pipe of this test whose descriptor names another user as its owner: only a process
    // with the restore privilege may do that on Windows; where it is refused, the owner
    // cannot be forged and there is nothing to test.
    use crate::sys::windows::pipe::{create, duplex_options};
    use crate::sys::windows::security::SecurityDescriptor;
    let endpoint = unique_endpoint("foreign-owner");
    let path = crate::sys::windows::pipe_path(&endpoint);
    let own = own_user_sid().expect("own sid");
    let sddl = pipe_sddl(&own, false).replacen(&format!("O:{own}"), "O:S-1-5-21-1-2-3-4242", 1);
    let descriptor = SecurityDescriptor::from_sddl(&sddl).expect("descriptor");
    let server = match create(&duplex_options(true), &path, &descriptor) {
        Ok(server) => server,
        Err(error) => {
            println!("a pipe owned by another user cannot be created here ({error}): skipped");
            return;
        }
    };
    let result = connect(&endpoint, &ClientConfig::default()).await;
    match result {
        Err(ConnectError::UntrustedServer { actual, .. }) => {
            assert_eq!(actual, crate::User::Sid("S-1-5-21-1-2-3-4242".to_owned()));
        }
        other => panic!("expected UntrustedServer, got {:?}", other.map(|_| ())),
    }
    // Nothing was sent: the server instance has no data waiting.
    let info =
        crate::sys::windows::state::local_info(super::super::pipe::Pipe::server_handle(&server));
    if let Some(info) = info {
        assert_eq!(
            info.ReadDataAvailable, 0,
            "the refused client sent something"
        );
    }
}

#[tokio::test]
async fn pipe_descriptor_read_back_from_a_live_pipe() {
    let owner = own_user_sid().expect("own sid");
    for allow_other_users in [false, true] {
        let tag = if allow_other_users {
            "dacl-open"
        } else {
            "dacl"
        };
        let endpoint = unique_endpoint(tag).allow_other_users(allow_other_users);
        let listener = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
        let sddl = read_back(&listener.address(), FILE_GENERIC_READ);
        println!("pipe descriptor read back (allow_other_users = {allow_other_users}): {sddl}");
        assert!(sddl.starts_with(&format!("O:{owner}")), "owner: {sddl}");
        assert!(sddl.contains("D:P"), "DACL must be protected: {sddl}");
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
            let rights = other_users.first().map(|(_, rights, _)| rights.as_str());
            assert_eq!(other_users.len(), 1, "{sddl}");
            let mask = rights
                .and_then(|r| u32::from_str_radix(r.trim_start_matches("0x"), 16).ok())
                .unwrap_or_else(|| panic!("rights {rights:?} not a plain mask"));
            assert_eq!(mask, CLIENT_ACCESS);
        } else {
            assert!(other_users.is_empty(), "{sddl}");
            assert_eq!(aces.len(), 4, "{sddl}");
        }
    }
}

#[tokio::test]
async fn pair_descriptor_follows_the_endpoint() {
    let owner = own_user_sid().expect("own sid");
    for allow_other_users in [false, true] {
        let tag = if allow_other_users {
            "pair-dacl-open"
        } else {
            "pair-dacl"
        };
        let endpoint = unique_endpoint(tag).allow_other_users(allow_other_users);
        let _listener = PairListener::bind(&endpoint, &ServerConfig::default()).expect("bind");
        let (input, output) = pair_paths(&endpoint);
        for (path, access) in [(input, PAIR_WRITE_ACCESS), (output, PAIR_READ_ACCESS)] {
            let sddl = read_back(&path, access);
            println!("pair descriptor read back ({path}): {sddl}");
            assert!(sddl.starts_with(&format!("O:{owner}")), "owner: {sddl}");
            assert!(sddl.contains("D:P"), "DACL must be protected: {sddl}");
            let aces = aces(&sddl);
            let other_users = aces
                .iter()
                .filter(|(kind, _, sid)| kind == "A" && sid == "AU")
                .count();
            assert_eq!(
                other_users,
                usize::from(allow_other_users),
                "{path}: {sddl}"
            );
            assert_eq!(aces.len(), 4 + usize::from(allow_other_users), "{sddl}");
        }
    }
}

#[tokio::test]
async fn second_server_on_a_live_name_cannot_squat_it() {
    let endpoint = unique_endpoint("squat");
    let first = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
    match Listener::bind(&endpoint, &ServerConfig::default()) {
        Err(BindError::AddrInUse { .. }) => {}
        Ok(_) if under_wine() => println!(
            "NOT CONFIRMED: Wine does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE; a second \
             server on a live name succeeded here and would fail on Windows"
        ),
        Ok(_) => panic!("a second server took the live name {}", first.address()),
        Err(other) => panic!("expected AddrInUse, got {other:?}"),
    }
}

/// The impersonation level a client allowed, as the server sees it once it has read.
fn impersonation_level(server: HANDLE) -> io::Result<i32> {
    use std::os::windows::io::{FromRawHandle, OwnedHandle};
    use windows_sys::Win32::Security::{
        GetTokenInformation, RevertToSelf, TokenImpersonationLevel, TOKEN_QUERY,
    };
    use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
    use windows_sys::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};
    // SAFETY: impersonation on this thread only, reverted before anything else runs here; the
    // token opened is owned and closed.
    unsafe {
        if ImpersonateNamedPipeClient(server) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut token: HANDLE = std::ptr::null_mut();
        let opened = OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token);
        let error = io::Error::last_os_error();
        RevertToSelf();
        if opened == 0 {
            return Err(error);
        }
        let token = OwnedHandle::from_raw_handle(token);
        let mut level = 0i32;
        let mut len = 0u32;
        if GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenImpersonationLevel,
            (&mut level as *mut i32).cast(),
            4,
            &mut len,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(level)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_flags_read_back_from_a_live_pipe() {
    use bytes::Bytes;
    use rpc_core::frame::FrameWrite;
    use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectBasicInformation};
    use windows_sys::Win32::Security::SecurityIdentification;
    use windows_sys::Win32::System::WindowsProgramming::PUBLIC_OBJECT_BASIC_INFORMATION;
    let ((mut server_reader, _server_writer), (client_reader, mut client_writer), _listener) =
        connected_pair("flags").await;

    // The access the client's handle was granted: exactly what it asked for.
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut info: PUBLIC_OBJECT_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: an open handle and a buffer of the structure's size.
    let status = unsafe {
        NtQueryObject(
            super::raw(&client_reader),
            ObjectBasicInformation,
            (&mut info as *mut PUBLIC_OBJECT_BASIC_INFORMATION).cast(),
            std::mem::size_of::<PUBLIC_OBJECT_BASIC_INFORMATION>() as u32,
            std::ptr::null_mut(),
        )
    };
    assert!(status >= 0, "NtQueryObject: {status:#x}");
    println!("client access read back: {:#x}", info.GrantedAccess);
    assert_eq!(info.GrantedAccess, CLIENT_ACCESS);

    client_writer
        .write_frames(&[Bytes::from(super::frame(1))])
        .await
        .expect("write");
    super::next(&mut server_reader, 1 << 20)
        .await
        .expect("frame");
    match impersonation_level(super::raw(&server_reader)) {
        Ok(level) if level == SecurityIdentification => {
            println!("client impersonation level read back: identification");
        }
        other if under_wine() => println!(
            "NOT CONFIRMED: Wine does not honour SECURITY_IDENTIFICATION; the client's \
             impersonation level read back as {other:?} (1 = identification)"
        ),
        other => panic!("the server could impersonate the client: level {other:?}"),
    }
}

/// The server reads who its client is from the connection, as soon as it is accepted (before
/// the client has written anything), without any right on the client's process; the accepted
/// connection's peer carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_user_is_read_from_the_connection() {
    let own = own_user_sid().expect("this process's user");
    let ((server_reader, _server_writer), _client, _listener) = connected_pair("client-user").await;
    let sid = crate::sys::windows::security::client_user_sid(handle(&server_reader));
    assert_eq!(sid.expect("the client's user"), own);

    let endpoint = unique_endpoint("peer-user");
    let mut listener = Listener::bind(&endpoint, &ServerConfig::default()).expect("bind");
    let config = ClientConfig::default();
    let (accepted, connected) = tokio::join!(listener.accept(), connect(&endpoint, &config));
    let (_reader, _writer, peer) = accepted.expect("accept");
    let _client = connected.map_err(|e| e.to_string()).expect("connect");
    assert_eq!(peer.sid.as_deref(), Some(own.as_str()));
    assert_eq!(peer.pid, Some(std::process::id()));
}
