//! The server's side of the handshake: read the hello, compare, welcome or reject.

use crate::error::ProtocolError;
use crate::frame::{encode_frame, header_frame, FrameBody, FrameRead, FrameWrite};
use crate::protocol::{
    GoodbyeReason, Header, MethodEntry, Rejection, ANY_SERVICE, MAGIC, PROTOCOL_VERSION,
};
use crate::server::config::ServerConfig;
use crate::server::ConnectionError;
use crate::service::{Dispatch, ServiceDescriptor};

/// The longest hello read: a peer that is nobody yet makes the server set aside no more (a
/// hello is a few dozen bytes and a service name).
pub(crate) const MAX_HELLO: u32 = 64 * 1024;

/// Reads the hello and answers it; returns the client's maximum frame.
pub(super) async fn handshake<D: Dispatch, R: FrameRead, W: FrameWrite>(
    reader: &mut R,
    writer: &mut W,
    service: &D,
    config: &ServerConfig,
) -> Result<u32, ConnectionError> {
    let descriptor = service.descriptor();
    let frame = reader
        .read_frame(config.max_frame.min(MAX_HELLO))
        .await
        .map_err(ConnectionError::Frame)?
        .ok_or(ConnectionError::Protocol(ProtocolError::ExpectedHandshake))?;
    let (version, service_name, fingerprint, max_frame, callbacks) =
        match crate::frame::decode_header(&frame) {
            Ok((
                Header::Hello {
                    magic,
                    version,
                    service,
                    fingerprint,
                    max_frame,
                    callbacks,
                },
                _,
            )) => {
                if magic != MAGIC {
                    return Err(ConnectionError::Protocol(ProtocolError::BadMagic));
                }
                (version, service, fingerprint, max_frame, callbacks)
            }
            Ok(_) => return Err(ConnectionError::Protocol(ProtocolError::ExpectedHandshake)),
            // The hello of another version, whose later fields this one cannot read, is still
            // answered with the version this server speaks.
            Err(_) => match other_version(&frame) {
                Some(version) => return Err(reject(writer, unsupported(version)).await),
                None => return Err(ConnectionError::Protocol(ProtocolError::BadHeader)),
            },
        };
    let rejection = if version != PROTOCOL_VERSION {
        Some(unsupported(version))
    } else if service_name == ANY_SERVICE {
        // A client that asks what this server is (`describe`), with no interface of its own.
        None
    } else if service_name != descriptor.name {
        Some(Rejection::UnknownService {
            requested: service_name,
            served: descriptor.name.to_owned(),
        })
    } else {
        // The server calls back what the client serves: that must be exactly what it expects.
        let expected = descriptor.callbacks.map_or(0, |c| c.fingerprint());
        (callbacks != expected).then(|| Rejection::FingerprintMismatch {
            service: descriptor
                .callbacks
                .map_or_else(String::new, |c| c.name.to_owned()),
            client: callbacks,
            server: expected,
        })
    };
    if let Some(rejection) = rejection {
        return Err(reject(writer, rejection).await);
    }
    // Another version of the interface: the client binds method by method, from this table.
    let table = (fingerprint != descriptor.fingerprint()).then(|| method_table(descriptor));
    let welcome = encode_frame(
        &Header::Welcome {
            version: PROTOCOL_VERSION,
            max_frame: config.max_frame,
        },
        FrameBody::Value(&table),
        u32::MAX,
        false,
    )
    .map_err(|_| ConnectionError::Protocol(ProtocolError::BadHeader))?
    .into_bytes();
    writer
        .write_frames(&[welcome])
        .await
        .map_err(ConnectionError::Frame)?;
    Ok(max_frame)
}

/// The rejection of a client of protocol `version`.
fn unsupported(version: u16) -> Rejection {
    Rejection::UnsupportedVersion {
        client: version,
        server: PROTOCOL_VERSION,
    }
}

/// Answers the hello with `rejection` and closes; the error the connection ends with.
async fn reject<W: FrameWrite>(writer: &mut W, rejection: Rejection) -> ConnectionError {
    let _ = writer
        .write_frames(&[header_frame(&Header::Reject(rejection.clone()))])
        .await;
    let _ = writer.close().await;
    ConnectionError::Rejected(rejection)
}

/// The protocol version of a hello that does not decode as this version's, if it is another
/// one: every version's hello begins with its kind (0), the magic and the version, whatever
/// follows them.
fn other_version(frame: &[u8]) -> Option<u16> {
    let rest = frame.strip_prefix(&[0])?.strip_prefix(&MAGIC[..])?;
    let (version, _) = postcard::take_from_bytes::<u16>(rest).ok()?;
    (version != PROTOCOL_VERSION).then_some(version)
}

/// The service's methods as the welcome lists them for a client of another interface.
fn method_table(descriptor: &ServiceDescriptor) -> Vec<MethodEntry> {
    let schema = descriptor.schema();
    schema
        .methods
        .iter()
        .map(|method| {
            let (args, result) = method.hashes(&schema.types);
            MethodEntry {
                id: method.id,
                args,
                result,
            }
        })
        .collect()
}

/// How long refusing a connection may take: reading its hello, writing the answer, closing.
/// Ample for a client that sends its hello as it connects, even on a loaded machine.
const REFUSAL_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Answers a client's hello with `rejection` and closes the connection, within two seconds
/// whatever the client does. A transport's server loop uses it for a client over its limits
/// ([`Rejection::ServerBusy`]).
///
/// The hello is read first: a connection closed with unread data is reset on some systems,
/// and the client would see the reset instead of the answer.
pub async fn refuse_connection<R: FrameRead, W: FrameWrite>(
    reader: R,
    writer: W,
    rejection: Rejection,
) {
    answer_hello(reader, writer, &Header::Reject(rejection)).await;
}

/// Answers a client's hello with the goodbye of a server that is shutting down, as a connection
/// still in its handshake gets at a shutdown, and closes the connection, within two seconds
/// whatever the client does. A transport's server loop uses it for a client that comes while
/// the connections drain, where the endpoint cannot disappear at once (the client's connect
/// fails with [`RpcError::ClosedByPeer`](crate::RpcError::ClosedByPeer)).
pub async fn turn_away_shutting_down<R: FrameRead, W: FrameWrite>(reader: R, writer: W) {
    let goodbye = Header::Goodbye {
        reason: GoodbyeReason::ShuttingDown,
    };
    answer_hello(reader, writer, &goodbye).await;
}

/// Reads the hello (see [`refuse_connection`]), answers it with `answer` and closes.
async fn answer_hello<R: FrameRead, W: FrameWrite>(mut reader: R, mut writer: W, answer: &Header) {
    let refusal = async {
        // The hello is small; whatever else the client sent is not read.
        let _ = reader.read_frame(1024).await;
        let _ = writer.write_frames(&[header_frame(answer)]).await;
        let _ = writer.close().await;
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, refusal).await;
}
