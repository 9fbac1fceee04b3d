//! Pipe pairs: one inbound and one outbound named pipe, one instance each.
//!
//! The server creates `\\.\pipe\rpc-<name>.in` (client to server) and
//! `\\.\pipe\rpc-<name>.out` (server to client), each with a single instance, the same
//! security descriptor, flags and message mode as the duplex pipes, and serves one client at a
//! time over them. A client may open the two pipes in either order; a second client while one is
//! connected waits, and gets [`ConnectError::Busy`] after [`ClientConfig::connect_timeout`];
//! with no server, [`ConnectError::NotFound`] comes at once; a client that opens one pipe and
//! not the other within the handshake timeout is disconnected, and so are two pipes opened by
//! two processes (both must be the client's). The server's handlers see the client's process
//! and user, as over a duplex pipe. Once a connection ends, the
//! server waits up to a second for its client to close the pipe it reads, so that the client
//! can read what is left in it (its last replies, a goodbye) before the pipe is disconnected.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::{
    serve_connection, CancellationToken, Client, ClientConfig, Dispatch, PeerInfo, ServerConfig,
};
use tokio::net::windows::named_pipe::{NamedPipeServer, PipeMode, ServerOptions};
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_NO_DATA};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_GENERIC_READ, FILE_READ_ATTRIBUTES, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, READ_CONTROL,
};

use super::client::{check_owner, open_with_retry};
use super::frames::{reader, writer, PipeReader, PipeWriter};
use super::pipe::{self, client_process_id, Pipe, PIPE_BUFFER};
use super::pipe_path;
use super::security::{own_user_sid, peer_user_sid, pipe_sddl, SecurityDescriptor};
use super::state::other_end_gone;
use crate::endpoint::Endpoint;
use crate::error::{BindError, ConnectError};

/// Most time a pair's server waits, once a connection has ended, for its client to close the
/// pipe it reads before disconnecting it (which throws away what the client has not read), and
/// listening for the next client.
const CLIENT_READS_WITHIN: Duration = Duration::from_secs(1);

/// The two pipes of a pipe pair: `<pipe>.in` (client to server) and `<pipe>.out`.
pub(crate) fn pair_paths(endpoint: &Endpoint) -> (String, String) {
    let base = pipe_path(endpoint);
    (format!("{base}.in"), format!("{base}.out"))
}

/// What a pair's client asks for on the pipe it writes: write data, read and write attributes,
/// and `READ_CONTROL` to read the pipe's owner (never FILE_APPEND_DATA, which is
/// FILE_CREATE_PIPE_INSTANCE).
pub(super) const PAIR_WRITE_ACCESS: u32 =
    FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | READ_CONTROL;

/// What a pair's client asks for on the pipe it reads.
pub(super) const PAIR_READ_ACCESS: u32 = FILE_GENERIC_READ | FILE_WRITE_ATTRIBUTES;

/// The options of one pipe of a pair: one direction, one instance, the first and only one.
fn pair_options(inbound: bool) -> ServerOptions {
    let mut options = ServerOptions::new();
    options
        .pipe_mode(PipeMode::Message)
        .reject_remote_clients(true)
        .first_pipe_instance(true)
        .access_inbound(inbound)
        .access_outbound(!inbound)
        .max_instances(1)
        .in_buffer_size(PIPE_BUFFER)
        .out_buffer_size(PIPE_BUFFER);
    options
}

/// The server of a pipe pair: one inbound and one outbound pipe, one instance each, so one
/// client at a time; the same security descriptor and mode as the duplex pipes.
#[derive(Debug)]
pub(crate) struct PairListener {
    input: Arc<Pipe>,
    output: Arc<Pipe>,
    patience: Duration,
}

impl PairListener {
    /// Creates both pipes; fails if the name is taken.
    pub(crate) fn bind(endpoint: &Endpoint, config: &ServerConfig) -> Result<Self, BindError> {
        let name = endpoint.name().to_owned();
        let io_err = |source: io::Error| BindError::Io {
            name: name.clone(),
            source,
        };
        let owner = own_user_sid().map_err(io_err)?;
        let descriptor =
            SecurityDescriptor::from_sddl(&pipe_sddl(&owner, endpoint.other_users_allowed()))
                .map_err(io_err)?;
        let (input, output) = pair_paths(endpoint);
        let create = |path: &str, inbound: bool| match pipe::create(
            &pair_options(inbound),
            path,
            &descriptor,
        ) {
            Ok(pipe) => Ok(Arc::new(Pipe::Server(pipe))),
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                Err(BindError::AddrInUse { name: name.clone() })
            }
            Err(e) => Err(io_err(e)),
        };
        Ok(Self {
            input: create(&input, true)?,
            output: create(&output, false)?,
            patience: config.get_handshake_timeout(),
        })
    }

    /// Waits for a client to open both pipes (in either order). A client that opens one and
    /// not the other within the handshake timeout is disconnected, and so are two pipes opened
    /// by two processes: with other users allowed, another user's process could otherwise open
    /// the pipe that a client reads and take its replies.
    pub(crate) async fn accept(&mut self) -> io::Result<(PipeReader, PipeWriter, PeerInfo)> {
        let pid = loop {
            let (input, output) = (server(&self.input)?, server(&self.output)?);
            // Whichever the client opens first; the other must follow within the timeout.
            // A failure names the pipe whose wait failed.
            let both = async {
                tokio::select! {
                    first = input.connect() => match first {
                        Ok(()) => tokio::time::timeout(self.patience, output.connect())
                            .await
                            .map(|second| second.map_err(|e| (e, output))),
                        Err(e) => Ok(Err((e, input))),
                    },
                    first = output.connect() => match first {
                        Ok(()) => tokio::time::timeout(self.patience, input.connect())
                            .await
                            .map(|second| second.map_err(|e| (e, input))),
                        Err(e) => Ok(Err((e, output))),
                    },
                }
            };
            match both.await {
                Ok(Ok(())) => {
                    let writing = client_process_id(server(&self.input)?);
                    let reading = client_process_id(server(&self.output)?);
                    match (writing, reading) {
                        (Some(writing), Some(reading)) if writing == reading => break writing,
                        _ => {
                            tracing::warn!(
                                ?writing,
                                ?reading,
                                "the two pipes of the pair were opened by different processes"
                            );
                            self.disconnect();
                        }
                    }
                }
                // A client came and went before the server waited on the pipe (anyone may open
                // it and close it at once): that pipe is disconnected, so that it listens again;
                // the other one's wait goes on.
                Ok(Err((e, failed))) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    tracing::debug!("a client opened a pipe of the pair and closed it at once");
                    failed.disconnect()?;
                }
                Ok(Err((e, _))) => return Err(e),
                Err(_) => {
                    tracing::warn!("a client opened one pipe of the pair and not the other");
                    self.disconnect();
                }
            }
        };
        let sid = peer_user_sid(Pipe::server_handle(server(&self.input)?), Some(pid));
        Ok((
            reader(Arc::clone(&self.input)),
            writer(Arc::clone(&self.output)),
            PeerInfo::windows(Some(pid), sid),
        ))
    }

    /// Waits until the client has closed the pipe it reads, for at most [`CLIENT_READS_WITHIN`]:
    /// what it has not read yet (a last reply, the goodbye that says why the server ended the
    /// connection) is thrown away when the pipe is disconnected.
    pub(crate) async fn client_done_reading(&self) {
        let _ =
            tokio::time::timeout(CLIENT_READS_WITHIN, other_end_gone(self.output.handle())).await;
    }

    /// Drops the client, so both pipes listen again.
    pub(crate) fn disconnect(&mut self) {
        for pipe in [&self.input, &self.output] {
            if let Ok(pipe) = server(pipe) {
                // Disconnecting an instance with no client is harmless.
                let _ = pipe.disconnect();
            }
        }
    }
}

/// The server instance of a pair's pipe.
fn server(pipe: &Pipe) -> io::Result<&NamedPipeServer> {
    match pipe {
        Pipe::Server(server) => Ok(server),
        Pipe::Client(_) => Err(io::ErrorKind::InvalidInput.into()),
    }
}

/// Connects to a pipe pair: the outbound pipe (to read), then the inbound one (to write), and
/// checks the owner of both before anything is sent.
pub(crate) async fn connect_pair(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(PipeReader, PipeWriter), ConnectError> {
    let (input, output) = pair_paths(endpoint);
    let give_up = Instant::now() + config.get_connect_timeout();
    let from_server = open_with_retry(&output, PAIR_READ_ACCESS, give_up).await?;
    let to_server = open_with_retry(&input, PAIR_WRITE_ACCESS, give_up).await?;
    check_owner(&from_server, &output)?;
    check_owner(&to_server, &input)?;
    Ok((
        reader(Arc::new(Pipe::Client(from_server))),
        writer(Arc::new(Pipe::Client(to_server))),
    ))
}

/// A pipe pair bound to a name, ready to [`serve`](PairServer::serve).
pub struct PairServer {
    listener: PairListener,
    paths: (String, String),
}

impl std::fmt::Debug for PairServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairServer")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl PairServer {
    /// Creates `endpoint`'s two pipes.
    ///
    /// # Errors
    ///
    /// [`BindError::AddrInUse`] if the name is taken; [`BindError::Io`] if creating a pipe
    /// fails.
    pub fn bind(endpoint: &Endpoint) -> Result<Self, BindError> {
        Self::bind_with(endpoint, &ServerConfig::default())
    }

    /// [`PairServer::bind`], with the settings that `serve` will use (the handshake timeout
    /// also bounds how long a client may take to open its second pipe).
    ///
    /// # Errors
    ///
    /// As [`PairServer::bind`].
    pub fn bind_with(endpoint: &Endpoint, config: &ServerConfig) -> Result<Self, BindError> {
        Ok(Self {
            listener: PairListener::bind(endpoint, config)?,
            paths: pair_paths(endpoint),
        })
    }

    /// The two pipes: client to server, and server to client.
    pub fn paths(&self) -> (&Path, &Path) {
        (Path::new(&self.paths.0), Path::new(&self.paths.1))
    }

    /// Serves clients one at a time, each until it closes its connection. Runs until dropped
    /// (which closes the current connection and the pipes).
    ///
    /// # Errors
    ///
    /// Only if waiting for a client fails. Errors of single connections are logged and the next
    /// client is served.
    ///
    /// The future owns a copy of `config`, so it can be spawned.
    pub fn serve<D: Dispatch>(
        self,
        service: D,
        config: &ServerConfig,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static {
        self.serve_owned(service, config.clone())
    }

    async fn serve_owned<D: Dispatch>(
        mut self,
        service: D,
        config: ServerConfig,
    ) -> io::Result<()> {
        let service = Arc::new(service);
        let shutdown = CancellationToken::new();
        loop {
            let (reader, writer, peer) = self.listener.accept().await?;
            tracing::debug!(pipe = %self.paths.0, %peer, "client connected");
            let served = serve_connection(
                reader,
                writer,
                peer,
                Arc::clone(&service),
                &config,
                &shutdown,
            )
            .await;
            if let Err(error) = served {
                tracing::info!(%error, "pipe pair connection ended with an error");
            }
            self.listener.client_done_reading().await;
            self.listener.disconnect();
        }
    }
}

/// Connects to the pipe pair served on `endpoint`.
///
/// # Errors
///
/// [`ConnectError::NotFound`] if no server serves the name, [`ConnectError::Busy`] if another
/// client stayed connected for [`ClientConfig::connect_timeout`] (default 5 s),
/// [`ConnectError::UntrustedServer`] if the server runs as another user; otherwise as
/// [`crate::connect`].
pub async fn connect<C: Client>(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<C, ConnectError> {
    let (reader, writer) = connect_pair(endpoint, config).await?;
    Ok(rpc_core::connect(reader, writer, config).await?)
}
