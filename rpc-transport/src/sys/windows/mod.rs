//! Windows named pipes, read and written on tokio's completion port.
//!
//! * The name `calculator` maps to `\\.\pipe\rpc-calculator`.
//! * The pipes are message pipes (type and read mode), and our own peers write one message per
//!   frame; but the reader reads them as a byte stream with the length-prefixed frame reader
//!   that Unix sockets use ([`rpc_core::frame::FrameReader`]). A frame that arrives as several
//!   messages (Node's libuv writes each `write()` as a message) or several frames in one message
//!   are served; a frame whose length is over the maximum, or a peer that leaves inside a frame,
//!   is a typed [`FrameError`](rpc_core::frame::FrameError) that costs that connection only.
//! * The I/O is tokio's named pipes: overlapped reads and writes completed on mio's I/O
//!   completion port, so a connection costs no thread, and a write that does not complete at once
//!   waits on the port too. mio reads ahead into one buffer per pipe (4 KiB to 64 KiB), which is
//!   all a connection that stops reading holds.
//! * The server keeps four instances waiting (at least one, even when creating more fails), so
//!   that clients do not see "all instances busy" while there is room, also while a program
//!   opens the pipe in a loop. The pipe itself sets no instance limit: the accept loop bounds
//!   the instances.
//! * The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so another process
//!   cannot squat the name, and remote clients are rejected.
//! * The pipe's security descriptor names the server's user as its owner; its DACL grants full
//!   access to that user, SYSTEM and the administrators and denies the NETWORK logon; for an
//!   endpoint made with [`EndpointExt::allow_other_users`](crate::windows::EndpointExt::allow_other_users),
//!   authenticated users get read and write-data access (not `FILE_CREATE_PIPE_INSTANCE`,
//!   which `GENERIC_WRITE` would include). Pipe pairs get the same descriptor.
//! * Clients open the pipe with `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION` (the server
//!   cannot impersonate them), ask for read, write-data and write-attributes access only, and,
//!   before sending anything, read the pipe's owner from its security descriptor (which they
//!   may: read access includes `READ_CONTROL`) and refuse a pipe owned by anyone but their own
//!   user or SYSTEM. A standard user cannot open the token of a SYSTEM process, so this, not the
//!   server process's token, is what lets a user's program trust a SYSTEM service (.NET's
//!   `PipeOptions.CurrentUserOnly` checks the owner the same way).
//!
//! Files: `pipe` creates and opens pipes and turns them into byte halves, `security` holds the
//! security descriptor and the identity checks, `state` asks the kernel whether the other end
//! is gone, `frames` is the frame reader and writer, `listener` the accept loop, `client` the
//! client's open and checks, `pair` the pipe pairs.

pub(crate) mod child;
mod client;
mod frames;
mod listener;
pub(crate) mod pair;
mod pipe;
mod security;
mod state;
#[cfg(test)]
mod tests;

use std::io;

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_NOT_ENOUGH_MEMORY, ERROR_NOT_ENOUGH_QUOTA, ERROR_NO_DATA,
    ERROR_NO_SYSTEM_RESOURCES, ERROR_OUTOFMEMORY, ERROR_PIPE_CONNECTED,
};

pub(crate) use client::connect;
pub(crate) use listener::Listener;

use crate::endpoint::Endpoint;

/// The names of this framework's named pipes (`\\.\pipe\rpc-<name>`), every user's (a pipe's
/// owner is known only by opening it), without the two pipes of each pipe pair (`<name>.in`
/// and `<name>.out`), which a client does not connect to as an endpoint: on Unix, FIFO pairs
/// are not listed either.
pub(crate) fn list_endpoints() -> Result<Vec<String>, crate::ConnectError> {
    let dir = r"\\.\pipe\";
    let entries = std::fs::read_dir(dir).map_err(|source| crate::ConnectError::Io {
        endpoint: dir.to_owned(),
        source: std::sync::Arc::new(source),
    })?;
    let names = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("rpc-").map(str::to_owned)
        })
        .collect();
    Ok(endpoint_names(names))
}

/// `names` sorted, without the two pipes of each pipe pair: `<base>.in` and `<base>.out`, when
/// both are there.
fn endpoint_names(mut names: Vec<String>) -> Vec<String> {
    let all: std::collections::HashSet<String> = names.iter().cloned().collect();
    let pair_half = |name: &String| {
        let other = match (name.strip_suffix(".in"), name.strip_suffix(".out")) {
            (Some(base), _) => format!("{base}.out"),
            (_, Some(base)) => format!("{base}.in"),
            _ => return false,
        };
        all.contains(&other)
    };
    names.retain(|name| !pair_half(name));
    names.sort();
    names
}

/// The pipe path of an endpoint.
pub(crate) fn pipe_path(endpoint: &Endpoint) -> String {
    format!(r"\\.\pipe\rpc-{}", endpoint.name())
}

/// Whether a server that is shutting down keeps its listener while its connections drain, to
/// tell each new client so at once: a pipe's name lives on with the instances still draining,
/// so that without it a new client would wait for a free instance until its connect timeout.
pub(crate) const DRAINING_SERVER_TURNS_CLIENTS_AWAY: bool = true;

/// Whether an accept error is worth retrying: a client that connects and vanishes before the
/// server sees it; no memory, quota or system resources for the next instance.
pub(crate) fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(|code| code as u32),
        Some(
            ERROR_NO_DATA
                | ERROR_BROKEN_PIPE
                | ERROR_PIPE_CONNECTED
                | ERROR_NOT_ENOUGH_MEMORY
                | ERROR_NOT_ENOUGH_QUOTA
                | ERROR_OUTOFMEMORY
                | ERROR_NO_SYSTEM_RESOURCES
        )
    )
}

/// Completes when the process is asked to stop: Ctrl-C or Ctrl-Break, its console closing, the
/// user logging off or the system shutting down (the last two reach services only: Windows
/// ends a program of a user's session without them). For the last three, Windows ends the
/// process a few seconds after the request (5 s for a closing console); tokio's handler keeps
/// the process alive until then, so a graceful shutdown that fits that time completes.
pub(crate) async fn termination_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown};
    // A listener that cannot be installed never fires; the others still do.
    async fn wait(signal: io::Result<impl SignalLike>) {
        match signal {
            Ok(mut signal) => signal.recv().await,
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        () = wait(ctrl_c()) => {}
        () = wait(ctrl_break()) => {}
        () = wait(ctrl_close()) => {}
        () = wait(ctrl_logoff()) => {}
        () = wait(ctrl_shutdown()) => {}
    }
}

/// The one thing the console listeners of tokio have in common.
trait SignalLike {
    /// Waits for the next event.
    async fn recv(&mut self);
}

macro_rules! signal_like {
    ($($ty:ident),*) => {$(
        impl SignalLike for tokio::signal::windows::$ty {
            async fn recv(&mut self) {
                let _ = tokio::signal::windows::$ty::recv(self).await;
            }
        }
    )*};
}

signal_like!(CtrlC, CtrlBreak, CtrlClose, CtrlLogoff, CtrlShutdown);
