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
    } else if fingerprint != descriptor.fingerprint {
        Some(Rejection::FingerprintMismatch {
            service: service_name,
            client: fingerprint,
            server: descriptor.fingerprint,
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
