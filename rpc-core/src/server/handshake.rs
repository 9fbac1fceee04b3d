//! The server's side of the handshake: read the hello, compare, welcome or reject.

use crate::error::ProtocolError;
use crate::frame::{header_frame, FrameRead, FrameWrite};
use crate::protocol::{Header, Rejection, MAGIC, PROTOCOL_VERSION};
use crate::server::config::ServerConfig;
use crate::server::ConnectionError;
use crate::service::Dispatch;

/// Reads the hello and answers it; returns the client's maximum frame.
pub(super) async fn handshake<D: Dispatch, R: FrameRead, W: FrameWrite>(
    reader: &mut R,
    writer: &mut W,
    service: &D,
    config: &ServerConfig,
) -> Result<u32, ConnectionError> {
    let descriptor = service.descriptor();
    let frame = reader
        .read_frame(config.max_frame)
        .await
        .map_err(ConnectionError::Frame)?
        .ok_or(ConnectionError::Protocol(ProtocolError::ExpectedHandshake))?;
    let (version, service_name, fingerprint, max_frame) =
        match postcard::take_from_bytes::<Header>(&frame) {
            Ok((
                Header::Hello {
                    magic,
                    version,
                    service,
                    fingerprint,
                    max_frame,
                },
                _,
            )) => {
                if magic != MAGIC {
                    return Err(ConnectionError::Protocol(ProtocolError::BadMagic));
                }
                (version, service, fingerprint, max_frame)
            }
            Ok(_) => return Err(ConnectionError::Protocol(ProtocolError::ExpectedHandshake)),
            Err(_) => return Err(ConnectionError::Protocol(ProtocolError::BadHeader)),
        };
    let rejection = if version != PROTOCOL_VERSION {
        Some(Rejection::UnsupportedVersion {
            client: version,
            server: PROTOCOL_VERSION,
        })
    } else if service_name != descriptor.name {
        Some(Rejection::UnknownService {
            requested: service_name,
            served: descriptor.name.to_owned(),
        })
    } else if fingerprint != descriptor.handshake_fingerprint() {
        Some(Rejection::FingerprintMismatch {
            service: service_name,
            client: fingerprint,
            server: descriptor.handshake_fingerprint(),
        })
    } else {
        None
    };
    if let Some(rejection) = rejection {
        let _ = writer
            .write_frames(&[header_frame(&Header::Reject(rejection.clone()))])
            .await;
        let _ = writer.close().await;
        return Err(ConnectionError::Rejected(rejection));
    }
    let welcome = header_frame(&Header::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: config.max_frame,
    });
    writer
        .write_frames(&[welcome])
        .await
        .map_err(ConnectionError::Frame)?;
    Ok(max_frame)
}

/// How long refusing a connection may take: reading its hello, writing the answer, closing.
const REFUSAL_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a client's hello with `rejection` and closes the connection, within one second
/// whatever the client does. A transport's server loop uses it for a client over its limits
/// ([`Rejection::ServerBusy`]).
///
/// The hello is read first: a connection closed with unread data is reset on some systems,
/// and the client would see the reset instead of the answer.
pub async fn refuse_connection<R: FrameRead, W: FrameWrite>(
    mut reader: R,
    mut writer: W,
    rejection: Rejection,
) {
    let refusal = async {
        // The hello is small; whatever else the client sent is not read.
        let _ = reader.read_frame(1024).await;
        let _ = writer
            .write_frames(&[header_frame(&Header::Reject(rejection))])
            .await;
        let _ = writer.close().await;
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, refusal).await;
}
