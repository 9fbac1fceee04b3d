//! The client's side of the handshake: send the hello, read the welcome (or why not).

use crate::client::config::ClientConfig;
use crate::error::{ProtocolError, RpcError};
use crate::frame::{header_frame, FrameError, FrameRead, FrameWrite};
use crate::protocol::{Header, MAGIC, PROTOCOL_VERSION};
use crate::service::ServiceDescriptor;

/// Says hello for `service` and waits for the answer, within the handshake timeout; returns the
/// largest frame the server accepts.
pub(super) async fn handshake<R: FrameRead, W: FrameWrite>(
    reader: &mut R,
    writer: &mut W,
    service: &'static ServiceDescriptor,
    config: &ClientConfig,
) -> Result<u32, RpcError> {
    let hello = header_frame(&Header::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        service: service.name.to_owned(),
        fingerprint: service.handshake_fingerprint(),
        max_frame: config.max_frame,
    });
    let handshake = async {
        writer.write_frames(&[hello]).await?;
        // A first frame that is not one of ours means the peer is some other program (or a
        // child that printed to its stdout): say so, and show what it sent.
        let frame = match reader.read_frame(config.max_frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(RpcError::ConnectionClosed),
            Err(FrameError::TooLarge { len, .. }) => {
                return Err(not_this_protocol(&len.to_le_bytes()))
            }
            Err(FrameError::Empty) => return Err(not_this_protocol(&[0; 4])),
            Err(error) => return Err(error.into()),
        };
        match postcard::take_from_bytes::<Header>(&frame) {
            Ok((Header::Welcome { version, max_frame }, _)) => {
                if version != PROTOCOL_VERSION {
                    return Err(ProtocolError::BadVersion(version).into());
                }
                Ok(max_frame)
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
