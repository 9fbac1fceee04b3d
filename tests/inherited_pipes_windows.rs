//! On Windows, `serve_inherited_pipes` takes only pipe handles, takes them at most once a
//! process, closes nothing it did not take, and removes `RPC_CHILD_PIPES` from the environment.
//!
//! The test process plays the child: it makes the pipes and files itself and names their
//! handles in the variable. The environment and the flag are one per process, so the cases run
//! in sequence in the one test of this binary.
#![cfg(windows)]

#[path = "support/child_service.rs"]
mod child_service;

use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::windows::io::{AsRawHandle, IntoRawHandle, OwnedHandle, RawHandle};
use std::time::Duration;

use child_service::{HelperClient, HelperImpl, HelperServer};
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::child::{serve_inherited_pipes, BadPipesReason, ChildServeError, PIPES_ENV};
use rpc_transport::pipes::connect_pipes;
use windows_sys::Win32::Foundation::{
    GetHandleInformation, SetHandleInformation, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::GetFileType;
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};

/// How long a step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A handle value far above any this process opens (checked before use).
const NOT_OPEN: usize = 0x03FF_FFFC;

/// The handle's flags, or `None` if `handle` names nothing open.
fn handle_flags(handle: RawHandle) -> Option<u32> {
    let mut flags = 0;
    // SAFETY: GetHandleInformation only reads the handle's entry and writes one u32 through a
    // pointer valid for one; for a value that is not an open handle it fails.
    let ok = unsafe { GetHandleInformation(handle as HANDLE, &mut flags) } != 0;
    ok.then_some(flags)
}

fn is_open(handle: RawHandle) -> bool {
    handle_flags(handle).is_some()
}

fn is_inheritable(handle: RawHandle) -> bool {
    handle_flags(handle).is_some_and(|flags| flags & HANDLE_FLAG_INHERIT != 0)
}

/// Makes `handle` inheritable, as `spawn_with_pipes` does with the child's ends.
fn make_inheritable(handle: RawHandle) {
    // SAFETY: the handle is open and the test's; only its inherit flag changes.
    let ok =
        unsafe { SetHandleInformation(handle as HANDLE, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) }
            != 0;
    assert!(
        ok,
        "SetHandleInformation: {}",
        std::io::Error::last_os_error()
    );
}

/// The number that names `handle` in the variable.
fn number(handle: RawHandle) -> usize {
    handle as usize
}

/// A regular file of the test's, open for writing.
struct PlainFile {
    file: File,
    path: tempfile::TempPath,
}

impl PlainFile {
    fn new() -> Self {
        let (file, path) = tempfile::NamedTempFile::new()
            .expect("temp file")
            .into_parts();
        Self { file, path }
    }

    fn number(&self) -> usize {
        number(self.file.as_raw_handle())
    }

    /// Asserts that the file is still open under its handle and that writing through it still
    /// lands in it.
    #[track_caller]
    fn assert_still_mine(&self, case: &str) {
        assert!(
            is_open(self.file.as_raw_handle()),
            "{case}: file handle {} closed",
            self.number()
        );
        let line = format!("{case}\n");
        if let Err(error) = (&self.file).write_all(line.as_bytes()) {
            panic!(
                "{case}: write through handle {} failed: {error}",
                self.number()
            );
        }
        let content = std::fs::read_to_string(&self.path).expect("read the file back");
        assert!(content.ends_with(&line), "{case}: {content:?}");
    }
}

/// Asserts that both ends are open and still carry data from one to the other.
#[track_caller]
fn assert_pipe_works(read: &PipeReader, write: &PipeWriter, case: &str) {
    assert!(
        is_open(read.as_raw_handle()) && is_open(write.as_raw_handle()),
        "{case}: a pipe end closed"
    );
    if let Err(error) = (&*write).write_all(b"ping") {
        panic!("{case}: write to the pipe failed: {error}");
    }
    let mut buf = [0; 4];
    if let Err(error) = (&*read).read_exact(&mut buf) {
        panic!("{case}: read from the pipe failed: {error}");
    }
    assert_eq!(&buf, b"ping", "{case}");
}

/// The process's standard handles that are open: (name, handle, file type).
fn standard_handles() -> Vec<(&'static str, RawHandle, u32)> {
    let slots: [(&str, STD_HANDLE); 3] = [
        ("stdin", STD_INPUT_HANDLE),
        ("stdout", STD_OUTPUT_HANDLE),
        ("stderr", STD_ERROR_HANDLE),
    ];
    slots
        .into_iter()
        .filter_map(|(name, slot)| {
            // SAFETY: GetStdHandle only reads the process's standard handle slot.
            let handle = unsafe { GetStdHandle(slot) };
            let usable = !handle.is_null() && handle != INVALID_HANDLE_VALUE;
            (usable && is_open(handle)).then(|| {
                // SAFETY: GetFileType only queries the open handle.
                let kind = unsafe { GetFileType(handle) };
                (name, handle as RawHandle, kind)
            })
        })
        .collect()
}

/// Calls `serve_inherited_pipes` with the variable set to `value`, expecting it to fail at
/// once, and checks that the variable is gone afterwards.
async fn serve_failing(value: &str, case: &str) -> ChildServeError {
    std::env::set_var(PIPES_ENV, value);
    let config = ServerConfig::default();
    let serving = serve_inherited_pipes(HelperServer::new(HelperImpl), &config);
    let result = tokio::time::timeout(PATIENCE, serving)
        .await
        .unwrap_or_else(|_| panic!("{case}: still serving; expected an error"));
    assert_eq!(
        std::env::var_os(PIPES_ENV),
        None,
        "{case}: {PIPES_ENV} still set"
    );
    match result {
        Err(error) => error,
        Ok(()) => panic!("{case}: served; expected an error"),
    }
}

/// Expects `value` to be refused as bad pipes, for `want`.
async fn refused(value: &str, want: BadPipesReason, case: &str) {
    let error = serve_failing(value, case).await;
    assert!(
        matches!(&error, ChildServeError::BadPipes { reason, .. } if *reason == want),
        "{case} ({PIPES_ENV}={value}): expected {want:?}, got {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_pipe_handles_are_checked_taken_once_and_forgotten() {
    let (a, b) = (PlainFile::new(), PlainFile::new());
    let (read, write) = std::io::pipe().expect("pipe");
    let (r, w) = (number(read.as_raw_handle()), number(write.as_raw_handle()));
    // The ends carry data before any case, so a failure below is the case's doing.
    assert_pipe_works(&read, &write, "before");

    // No variable.
    std::env::remove_var(PIPES_ENV);
    let config = ServerConfig::default();
    let serving = serve_inherited_pipes(HelperServer::new(HelperImpl), &config);
    let error = tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("no variable: still serving")
        .expect_err("no variable: served");
    assert!(matches!(error, ChildServeError::NoPipes), "{error:?}");

    // (a) Handles of regular files: refused, and each file still open and written through,
    // also when a good pipe end comes first and so passes its check.
    let (fa, fb) = (a.number(), b.number());
    refused(&format!("{fa},{fb}"), BadPipesReason::NotAPipe, "two files").await;
    a.assert_still_mine("two files");
    b.assert_still_mine("two files");
    refused(&format!("{r},{fa}"), BadPipesReason::NotAPipe, "pipe, file").await;
    refused(&format!("{fb},{w}"), BadPipesReason::NotAPipe, "file, pipe").await;
    a.assert_still_mine("pipe and file");
    b.assert_still_mine("pipe and file");
    assert_pipe_works(&read, &write, "pipe and file");

    // A handle that is open but not a file at all (a thread's) is not a pipe either, not
    // something closed; and it stays open.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = stopped.recv();
    });
    let t = number(thread.as_raw_handle());
    refused(
        &format!("{r},{t}"),
        BadPipesReason::NotAPipe,
        "pipe, thread",
    )
    .await;
    refused(
        &format!("{t},{w}"),
        BadPipesReason::NotAPipe,
        "thread, pipe",
    )
    .await;
    assert!(is_open(thread.as_raw_handle()), "thread handle {t} closed");
    drop(stop);
    thread.join().expect("join the thread");
    assert_pipe_works(&read, &write, "pipe and thread");

    // (b) Malformed values, some naming the files: refused before any handle is looked at.
    for value in [
        "stdin,stdout".to_owned(),
        String::new(),
        format!("{fa}"),
        format!("{fa};{fb}"),
        format!("{fa},{fa}"),
        format!("{r},{w},{fa}"),
        format!("{r:#x},{w:#x}"),
        format!("{r},{}", u64::MAX),
    ] {
        refused(&value, BadPipesReason::Malformed, "malformed").await;
    }
    a.assert_still_mine("malformed");
    b.assert_still_mine("malformed");
    assert_pipe_works(&read, &write, "malformed");

    // (c) Values that name no open handle: a free slot, the null handle and negative values
    // (INVALID_HANDLE_VALUE and the current thread's pseudo-handle), alone or beside a pipe end
    // or a file.
    assert!(
        !is_open(NOT_OPEN as RawHandle),
        "handle {NOT_OPEN:#x} is open"
    );
    for value in [
        format!("{r},{NOT_OPEN}"),
        format!("{NOT_OPEN},{w}"),
        format!("{NOT_OPEN},{fa}"),
        format!("{r},0"),
        format!("0,{w}"),
        format!("-1,{w}"),
        format!("{r},-2"),
    ] {
        refused(
            &value,
            BadPipesReason::NotOpen,
            &format!("not open: {value}"),
        )
        .await;
    }
    a.assert_still_mine("not open");
    assert_pipe_works(&read, &write, "not open");

    // (d) Standard handles, in either place: refused, and neither they nor the others closed
    // or moved.
    let standard = standard_handles();
    assert!(!standard.is_empty(), "no standard handle is open");
    for &(name, handle, kind) in &standard {
        let s = number(handle);
        for value in [format!("{s},{w}"), format!("{r},{s}"), format!("{s},{fb}")] {
            refused(
                &value,
                BadPipesReason::Standard,
                &format!("{name}: {value}"),
            )
            .await;
        }
        assert!(is_open(handle), "{name}: handle {s} closed");
        // SAFETY: GetFileType only queries the handle, which is still open.
        assert_eq!(unsafe { GetFileType(handle as HANDLE) }, kind, "{name}");
    }
    assert_eq!(standard_handles(), standard, "the standard handles changed");
    b.assert_still_mine("standard");
    assert_pipe_works(&read, &write, "standard");
    drop((read, write));

    // (e) Real anonymous pipes, made inheritable as spawn_with_pipes passes them: served, the
    // variable is gone, and the taken ends are no longer inheritable.
    let (child_read, parent_write) = std::io::pipe().expect("pipe");
    let (parent_read, child_write) = std::io::pipe().expect("pipe");
    let (child_read, child_write) = (child_read.into_raw_handle(), child_write.into_raw_handle());
    make_inheritable(child_read);
    make_inheritable(child_write);
    let (cr, cw) = (number(child_read), number(child_write));
    std::env::set_var(PIPES_ENV, format!("{cr},{cw}"));
    // The service runs beside the parent's side on this task; the handshake completes only once
    // it has taken the pipes.
    let config = ServerConfig::default();
    let server = serve_inherited_pipes(HelperServer::new(HelperImpl), &config);
    let parent = async {
        let reader = tokio::fs::File::from_std(File::from(OwnedHandle::from(parent_read)));
        let writer = tokio::fs::File::from_std(File::from(OwnedHandle::from(parent_write)));
        let config = ClientConfig::default();
        let connecting = connect_pipes::<HelperClient, _, _>(reader, writer, &config);
        let helper = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("handshake in time")
            .expect("connect to the served pipes");
        assert_eq!(helper.add(2, 3).await.expect("add"), 5);
        assert_eq!(std::env::var_os(PIPES_ENV), None, "{PIPES_ENV} still set");
        for (handle, n) in [(child_read, cr), (child_write, cw)] {
            assert!(is_open(handle), "taken handle {n} closed");
            assert!(
                !is_inheritable(handle),
                "taken handle {n} is inherited by children"
            );
        }

        // A second call, naming the same pipes: refused, nothing closed, the connection goes on.
        let error = serve_failing(&format!("{cr},{cw}"), "second call, same pipes").await;
        assert!(
            matches!(error, ChildServeError::PipesTaken),
            "second call: {error:?}"
        );
        for (handle, n) in [(child_read, cr), (child_write, cw)] {
            assert!(is_open(handle), "second call: handle {n} closed");
        }
        assert_eq!(helper.add(3, 4).await.expect("add after"), 7);

        // A third, naming files: refused without touching them.
        let error = serve_failing(&format!("{fa},{fb}"), "third call, files").await;
        assert!(
            matches!(error, ChildServeError::PipesTaken),
            "third call: {error:?}"
        );
        a.assert_still_mine("third call");
        b.assert_still_mine("third call");
        assert_eq!(helper.add(4, 5).await.expect("add after third"), 9);
        // Dropping the client ends the service.
    };
    let (served, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(server, parent) })
        .await
        .expect("the service ends in time once the client is gone");
    assert!(served.is_ok(), "{served:?}");
}
