//! Starting a child service: the program, its pipes, and the handshake.

use std::io;
use std::process::Stdio;

use rpc_core::{Client, ClientConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};

use super::process::ChildProcess;
use super::SpawnError;
use crate::sys::child as os;

#[cfg(doc)]
use super::{serve_inherited_pipes, serve_stdio, PIPES_ENV};

fn program_name(command: &Command) -> String {
    command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned()
}

/// Starts `command` with its stdin and stdout piped to a client of `C`'s service, and performs
/// the handshake. The child's stderr is whatever `command` says (inherited by default). The
/// child must serve with [`serve_stdio`].
///
/// # Errors
///
/// [`SpawnError::Spawn`] if the program cannot be started; [`SpawnError::Handshake`] if it
/// does not complete the handshake (it is killed).
pub async fn spawn<C: Client>(
    command: impl Into<Command>,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError> {
    let mut command = command.into();
    let program = program_name(&command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let spawn_error = |source| SpawnError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let pipes = child.stdout.take().zip(child.stdin.take());
    let Some((stdout, stdin)) = pipes else {
        return Err(spawn_error(io::Error::other("child has no stdio pipes")));
    };
    connect_child(child, stdout, stdin, program, config).await
}

/// Starts `command` and connects a client of `C`'s service over two anonymous pipes that the
/// child inherits, leaving the child's stdin, stdout and stderr as `command` says. The child
/// finds the pipes in the [`PIPES_ENV`] environment variable and must serve with
/// [`serve_inherited_pipes`].
///
/// On Windows, the child's ends of the pipes are inheritable until the child has started: a
/// process spawned by another thread in that moment inherits them too.
///
/// # Errors
///
/// As [`spawn`].
pub async fn spawn_with_pipes<C: Client>(
    command: impl Into<Command>,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError> {
    let mut command = command.into();
    let program = program_name(&command);
    let spawn_error = |source| SpawnError::Spawn {
        program: program.clone(),
        source,
    };
    let (parent, child_ends) = os::pipe_pairs().map_err(spawn_error)?;
    os::pass_to(&child_ends, &mut command).map_err(spawn_error)?;
    command.kill_on_drop(true);
    let child = command.spawn().map_err(spawn_error)?;
    // The child has its copies now; ours must close, or the pipes never report end-of-file.
    drop(child_ends);
    let (reader, writer) = parent;
    connect_child(child, reader, writer, program, config).await
}

async fn connect_child<C, R, W>(
    child: Child,
    reader: R,
    writer: W,
    program: String,
    config: &ClientConfig,
) -> Result<(C, ChildProcess), SpawnError>
where
    C: Client,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (process, reader, writer) =
        ChildProcess::supervise(child, config.get_child_exit_grace(), reader, writer);
    match rpc_core::connect(reader, writer, config).await {
        Ok(client) => Ok((client, process)),
        Err(source) => {
            process.kill();
            Err(SpawnError::Handshake { program, source })
        }
    }
}
