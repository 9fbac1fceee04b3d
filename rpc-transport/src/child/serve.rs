//! The child's side: serving the parent over stdio or over the pipes it passed.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

use rpc_core::{Dispatch, ServerConfig};

use super::{BadPipesReason, BoxReader, BoxWriter, ChildServeError, End, PIPES_ENV};
use crate::pipes::serve_pipes_as;
use crate::sys::child as os;

#[cfg(doc)]
use super::spawn_with_pipes;

/// Set once [`serve_inherited_pipes`] has taken the pipes: it takes them at most once a process.
static PIPES_TAKEN: AtomicBool = AtomicBool::new(false);

/// Serves `service` to the parent over this process's stdin and stdout, until the parent
/// closes the connection, with the default [`ServerConfig`]. See [`serve_stdio_with`].
///
/// # Errors
///
/// As [`serve_stdio_with`].
pub async fn serve_stdio<D: Dispatch>(service: D) -> Result<(), ChildServeError> {
    serve_stdio_with(service, &ServerConfig::default()).await
}

/// Serves `service` to the parent over this process's stdin and stdout, until the parent
/// closes the connection (returns `Ok`, and the process should then exit).
///
/// First it takes stdin and stdout for the connection and points the process's standard
/// output at standard error and its standard input at the null device, so nothing else in the
/// process can write into the connection or read from it (see the [module](super) docs).
/// On Unix the handlers' [`rpc_core::CallContext`] names the parent process as the peer (its
/// process id and this process's user); on Windows the peer is unknown.
///
/// # Errors
///
/// [`ChildServeError::Stdio`] if stdin or stdout cannot be taken over (closed, or not
/// readable/writable); [`ChildServeError::Connection`] if the connection ends abnormally.
pub async fn serve_stdio_with<D: Dispatch>(
    service: D,
    config: &ServerConfig,
) -> Result<(), ChildServeError> {
    let (reader, writer) = os::take_stdio().map_err(ChildServeError::Stdio)?;
    serve_pipes_as(reader, writer, os::parent(), service, config)
        .await
        .map_err(ChildServeError::Connection)
}

/// Serves `service` to the parent over the two pipes passed by [`spawn_with_pipes`], until the
/// parent closes the connection. Stdin, stdout and stderr stay free for other uses.
///
/// The pipes are the descriptors (handles on Windows) that [`PIPES_ENV`] names. Before taking
/// them, this checks that both are open pipes, open in the right direction, and not standard
/// streams; if either is not, neither is taken and nothing is closed. The pipes are taken at
/// most once a process: a second call fails with [`ChildServeError::PipesTaken`].
///
/// # Environment
///
/// [`PIPES_ENV`] is removed from the environment by every call, before the handshake, so
/// processes this one starts do not inherit numbers that mean nothing (or another file) to
/// them. Call this before starting threads that read the environment other than through
/// `std::env` (a C library's `getenv`): std serialises its own access, not theirs.
///
/// The process must not use the numbers in [`PIPES_ENV`] for descriptors of its own: this
/// takes ownership of what they name once it has checked that they are pipes.
///
/// # Errors
///
/// [`ChildServeError::NoPipes`] or [`ChildServeError::BadPipes`] if the process was not
/// started by [`spawn_with_pipes`]; [`ChildServeError::PipesTaken`] if an earlier call took the
/// pipes; [`ChildServeError::Stdio`] if the pipes cannot be set up for asynchronous use;
/// [`ChildServeError::Connection`] if the connection ends abnormally.
pub async fn serve_inherited_pipes<D: Dispatch>(
    service: D,
    config: &ServerConfig,
) -> Result<(), ChildServeError> {
    let (reader, writer) = take_inherited_pipes()?;
    serve_pipes_as(reader, writer, os::parent(), service, config)
        .await
        .map_err(ChildServeError::Connection)
}

/// Removes [`PIPES_ENV`] from the environment and takes the pipes it names, if they are pipes
/// and no earlier call took them.
fn take_inherited_pipes() -> Result<(BoxReader, BoxWriter), ChildServeError> {
    let value = std::env::var_os(PIPES_ENV);
    // Removing a variable frees its text. std's environment functions hold a lock, so no
    // `std::env` reader sees it half-removed; a thread reading the environment outside std at
    // this moment could, which is why `serve_inherited_pipes` documents that it must be called
    // before any such thread runs. (The function is marked unsafe from edition 2024 for this
    // reason; this crate is edition 2021.)
    std::env::remove_var(PIPES_ENV);
    if PIPES_TAKEN.load(Ordering::Acquire) {
        return Err(ChildServeError::PipesTaken);
    }
    let value = value.ok_or(ChildServeError::NoPipes)?;
    let bad = |reason| ChildServeError::BadPipes {
        value: value.to_string_lossy().into_owned(),
        reason,
    };
    let (read, write) = parse_pipes(&value).map_err(bad)?;
    // Both are checked before either is taken, so a bad value closes nothing.
    let read = os::check(read, End::Read).map_err(bad)?;
    let write = os::check(write, End::Write).map_err(bad)?;
    if PIPES_TAKEN.swap(true, Ordering::AcqRel) {
        return Err(ChildServeError::PipesTaken);
    }
    // SAFETY: both are open pipes (just checked). Nothing else in the process owns them: the
    // parent passed them for this function to own, as `PIPES_ENV` says; the flag makes this
    // the only time they are taken in the process; and the variable is gone, so nothing else
    // learns their numbers from it. That the process does not use these numbers for
    // descriptors of its own is the caller's part, documented on `serve_inherited_pipes`.
    unsafe { os::take(read, write) }.map_err(ChildServeError::Stdio)
}

/// Parses `<read>,<write>` from [`PIPES_ENV`].
fn parse_pipes(value: &OsString) -> Result<(i64, i64), BadPipesReason> {
    let malformed = BadPipesReason::Malformed;
    let text = value.to_str().ok_or(malformed)?;
    let (read, write) = text.split_once(',').ok_or(malformed)?;
    let number = |s: &str| s.trim().parse::<i64>().map_err(|_| malformed);
    let (read, write) = (number(read)?, number(write)?);
    if read == write {
        return Err(malformed);
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_variable_is_parsed_strictly() {
        let parse = |s: &str| parse_pipes(&OsString::from(s));
        assert_eq!(parse("5,6"), Ok((5, 6)));
        for bad in ["", "5", "5,", "a,b", "5;6", "7,7"] {
            assert_eq!(parse(bad), Err(BadPipesReason::Malformed), "{bad:?}");
        }
    }
}
