//! Opening a client connection (the handshake, then the reader and writer tasks), and the
//! handle a server uses to call back its client on the connection it serves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::binding::Binding;
use crate::client::config::ClientConfig;
use crate::client::deadlines::Moved;
use crate::client::handle::{ClientHandle, Shared};
use crate::client::handshake::handshake;
use crate::client::pending::Conn;
use crate::client::reader::{read_replies, CallbackSide};
use crate::decode::DecodeLimits;
use crate::decode::{Plan, Side};
use crate::error::RpcError;
use crate::frame::{FrameError, FrameRead, FrameWrite};
use crate::server::ServerConfig;
use crate::service::ServiceDescriptor;
use crate::writer::{spawn_writer, Closer, Outbox};

/// How long the reader has, after a write failed, to deliver what the server sent before it
/// went and to see the end of the connection itself. Usually it sees the end much sooner, which
/// ends the wait; a server that closed only its reading end leaves the calls in flight waiting
/// this long. Long enough for a loaded machine to read a stream's window of items first: a stream a
/// server ends as it shuts down must end with its `ShuttingDown`, not `ConnectionClosed`.
const READER_GRACE: Duration = Duration::from_secs(1);

/// Fails the calls of a connection whose reader task is dropped before it ends, and, unless
/// the last handle stopped it, closes the transport too: the tasks died with their runtime, and
/// the peer must see the connection go. Made before the task is spawned and moved into it, so
/// that it acts even if the runtime drops the task before its first poll.
struct FailOnDrop {
    conn: Arc<Conn>,
    closer: Closer,
}

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        self.conn.fail_all(RpcError::ConnectionClosed);
        if !self.conn.released.load(Ordering::Acquire) {
            self.closer.close_now();
        }
    }
}

fn new_conn() -> Arc<Conn> {
    Arc::new(Conn {
        pending: Mutex::default(),
        shutting_down: AtomicBool::new(false),
        said_shutting_down: Notify::new(),
        released: AtomicBool::new(false),
        deadline_moved: Moved::default(),
        closed: Notify::new(),
        next_id: AtomicU64::new(1),
    })
}

/// Whether `config` serves the callbacks `service` declares.
fn check_callbacks(
    service: &'static ServiceDescriptor,
    config: &ClientConfig,
) -> Result<(), RpcError> {
    let served = config.callbacks.as_ref().map(|c| c.0.descriptor());
    let same = match (service.callbacks, served) {
        (None, None) => true,
        (Some(declared), Some(served)) => {
            declared.name == served.name && declared.fingerprint() == served.fingerprint()
        }
        _ => false,
    };
    if same {
        return Ok(());
    }
    Err(RpcError::CallbacksMismatch {
        service: service.name,
        declared: service.callbacks.map(|d| d.name),
        served: served.map(|d| d.name),
    })
}

/// The limits a client's callbacks run under, from its configuration.
fn callback_limits(config: &ClientConfig) -> ServerConfig {
    let mut limits = ServerConfig::new();
    limits
        .max_frame(config.max_frame)
        .max_in_flight(config.max_callbacks_in_flight);
    limits.decode_limits = config.decode_limits;
    limits
}

impl ClientHandle {
    /// Performs the handshake for `service` over a transport and starts the connection's tasks.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RpcError::Rejected`] if the server refuses (version, service or callbacks),
    /// [`RpcError::ClosedByPeer`] if it is shutting down,
    /// [`RpcError::HandshakeTimeout`] if it does not answer in time,
    /// [`RpcError::WelcomeTooLarge`] if its answer is longer than this client's maximum frame,
    /// and [`RpcError::ConnectionClosed`], [`RpcError::Frame`] or
    /// [`RpcError::Protocol`] if the connection fails or the peer does not speak the protocol;
    /// [`RpcError::CallbacksMismatch`], before anything is sent, if the configuration does not
    /// serve the callbacks `service` declares.
    pub async fn connect<R: FrameRead, W: FrameWrite>(
        mut reader: R,
        mut writer: W,
        service: &'static ServiceDescriptor,
        config: &ClientConfig,
    ) -> Result<Self, RpcError> {
        check_callbacks(service, config)?;
        let (server_max_frame, binding) =
            handshake(&mut reader, &mut writer, service, config).await?;
        reader.set_frame_timeout(config.frame_timeout);

        let conn = new_conn();
        let writer_conn = Arc::clone(&conn);
        // A write fails when the server has gone; what it sent before going (replies, the end
        // of a stream) may still wait to be read. The reader gets a moment to deliver it and to
        // see the end of the connection itself, then the write's error fails what is left: a
        // pipe or socket the server closed is the connection closed, whoever sees it first.
        let (outbox, writer_task) = spawn_writer(writer, move |e| {
            tokio::spawn(async move {
                if tokio::time::timeout(READER_GRACE, writer_conn.until_closed())
                    .await
                    .is_ok()
                {
                    return;
                }
                writer_conn.fail_all(match e {
                    FrameError::Io(kind) if closed_by_peer(kind) => RpcError::ConnectionClosed,
                    other => other.into(),
                });
            });
        });
        let reader_conn = Arc::clone(&conn);
        // Fails every call if the reader task is dropped before it ends (its runtime shut
        // down), so that no caller on another runtime waits forever.
        let guard = FailOnDrop {
            conn: Arc::clone(&conn),
            closer: outbox.closer(),
        };
        let limits = config.decode_limits;
        let max_frame = config.max_frame;
        let shared = Arc::new_cyclic(|link: &Weak<Shared>| {
            let callbacks = config.callbacks.as_ref().map(|callbacks| CallbackSide {
                dispatch: Arc::clone(&callbacks.0),
                config: callback_limits(config),
                outbox: outbox.clone(),
                link: link.clone(),
                server_max_frame,
            });
            let reader_task = tokio::spawn(
                async move {
                    read_replies(reader, &reader_conn, max_frame, callbacks, |error| {
                        tracing::debug!(%error, "client connection ended");
                        writer_task.abort();
                        reader_conn.fail_all(error);
                        drop(guard);
                    })
                    .await;
                }
                .instrument(tracing::debug_span!("rpc.client", service = service.name)),
            );
            Shared {
                conn,
                outbox: outbox.for_calls(),
                service,
                server_max_frame,
                results_plan: Plan::new(service, Side::Results, limits),
                stream_window: config.stream_window,
                reader_task: Some(reader_task.abort_handle()),
                wake_on_call: config.callbacks.is_some(),
                binding,
                default_timeout: config.default_timeout,
            }
        });
        Ok(Self {
            shared,
            timeout: config.default_timeout,
            deadline: None,
        })
    }

    /// A server's handle to the callbacks its client serves on the connection `outbox` writes
    /// to: calls go out through the connection's writer, and the connection hands their
    /// replies to [`ClientHandle::conn`]. `client_max_frame` is the largest frame the client
    /// accepts.
    pub(crate) fn callbacks_of_client(
        outbox: Outbox,
        service: &'static ServiceDescriptor,
        client_max_frame: u32,
        limits: DecodeLimits,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                conn: new_conn(),
                outbox: outbox.for_calls(),
                service,
                server_max_frame: client_max_frame,
                results_plan: Plan::new(service, Side::Results, limits),
                stream_window: 1,
                reader_task: None,
                wake_on_call: true,
                binding: Binding::All,
                default_timeout: ClientConfig::default().default_timeout,
            }),
            timeout: ClientConfig::default().default_timeout,
            deadline: None,
        }
    }

    /// A handle of the connection of `shared`, whose calls end no later than `deadline`.
    pub(crate) fn from_link(shared: Arc<Shared>, deadline: Option<Instant>) -> Self {
        Self {
            timeout: shared.default_timeout,
            shared,
            deadline,
        }
    }

    /// The calls in flight of this handle's connection.
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.shared.conn
    }

    /// What this handle's connection shares, for callbacks to reach it.
    pub(crate) fn link(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }
}

/// Whether a write failed because the peer closed its end.
fn closed_by_peer(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected};
    matches!(
        kind,
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected
    )
}
