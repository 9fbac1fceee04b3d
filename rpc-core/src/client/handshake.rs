//! The client's side of the handshake: send the hello, read the welcome (or why not).

use crate::client::binding::Binding;
use crate::client::config::ClientConfig;
use crate::decode;
use crate::error::{ProtocolError, RpcError};
use crate::frame::{header_frame, FrameError, FrameRead, FrameWrite};
use crate::protocol::{Header, MethodEntry, LEN_PREFIX, MAGIC, PROTOCOL_VERSION};
use crate::service::ServiceDescriptor;

/// Says hello for `service` and waits for the answer, within the handshake timeout; returns the
/// largest frame the server accepts and how the client's methods bind to the server's.
pub(super) async fn handshake<R: FrameRead, W: FrameWrite>(
    reader: &mut R,
    writer: &mut W,
    service: &'static ServiceDescriptor,
    config: &ClientConfig,
) -> Result<(u32, Binding), RpcError> {
    let hello = header_frame(&Header::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        service: service.name.to_owned(),
        fingerprint: service.fingerprint(),
        max_frame: config.max_frame,
        callbacks: config
            .callbacks
            .as_ref()
            .map_or(0, |c| c.0.descriptor().fingerprint()),
    });
    let handshake = async {
        writer.write_frames(&[hello]).await?;
        // A first frame that is not one of ours means the peer is some other program (or a
        // child that printed to its stdout): say so, and show what it sent.
        let frame = match reader.read_frame(config.max_frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(RpcError::ConnectionClosed),
            Err(FrameError::TooLarge { len, max }) => {
                return Err(too_large(reader.refused_frame_start(), len, max))
            }
            Err(FrameError::Empty) => return Err(not_this_protocol(&[0; 4])),
            Err(error) => return Err(error.into()),
        };
        match crate::frame::decode_header(&frame) {
            Ok((Header::Welcome { version, max_frame }, body)) => {
                if version != PROTOCOL_VERSION {
                    return Err(ProtocolError::BadVersion(version).into());
                }
                // No body is the same as `None`: the same interface.
                let table = match body {
                    [] => None,
                    body => {
                        decode::from_slice::<Option<Vec<MethodEntry>>>(body, &config.decode_limits)
                            .map_err(|_| ProtocolError::BadWelcome)?
                    }
                };
                Ok((max_frame, Binding::new(service, table)))
            }
            Ok((Header::Reject(rejection), _)) => Err(RpcError::Rejected(rejection)),
            Ok((Header::Goodbye { reason }, _)) => Err(RpcError::ClosedByPeer(reason)),
            Ok(_) => Err(ProtocolError::ExpectedHandshake.into()),
            Err(_) => Err(not_this_protocol(&frame)),
        }
    };
    tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| RpcError::HandshakeTimeout)?
}

/// The handshake's error for a first frame longer than the client's maximum, given what has
/// arrived of it (`start`, length prefix first): a welcome too large for this client if it
/// starts like one, else a peer that does not speak the protocol (whose first bytes, read as
/// a length, are usually huge).
fn too_large(start: &[u8], len: u32, max: u32) -> RpcError {
    let payload = start.get(LEN_PREFIX..).unwrap_or_default();
    match crate::frame::decode_header(payload) {
        Ok((Header::Welcome { .. }, _)) => RpcError::WelcomeTooLarge { len, max },
        _ if start.is_empty() => not_this_protocol(&len.to_le_bytes()),
        _ => not_this_protocol(start),
    }
}

/// The handshake's error for a first frame that is not one of this protocol.
fn not_this_protocol(received: &[u8]) -> RpcError {
    const SHOWN: usize = 32;
    let shown = received.get(..SHOWN).unwrap_or(received);
    let more = if received.len() > SHOWN { "..." } else { "" };
    ProtocolError::NotThisProtocol {
        received: format!("\"{}\"{more}", shown.escape_ascii()),
    }
    .into()
}
