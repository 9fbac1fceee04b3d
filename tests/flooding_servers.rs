//! A server that floods its client with frames the client has no use for (replies to calls
//! that are over) cannot hold up the client's deadlines: a call it never answers still fails
//! with `DeadlineExceeded` on time, although the client's reader always has a frame to read.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ProbeClient;
use rpc_core::frame::{FrameError, FrameRead, FrameWrite};
use rpc_core::protocol::{Header, ReplyStatus, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use rpc_core::{ClientConfig, RpcError};
use tokio::sync::oneshot;

/// A payload as a reader returns it (no length prefix).
fn payload(header: &Header, body: &[u8]) -> Bytes {
    let mut payload = postcard::to_stdvec(header).expect("encode");
    payload.extend_from_slice(body);
    Bytes::from(payload)
}

/// Welcomes the client, then answers its first call again and again without end.
struct Flood {
    welcomed: bool,
    first_call: Option<oneshot::Receiver<u64>>,
    id: u64,
}

impl FrameRead for Flood {
    async fn read_frame(&mut self, _max_frame: u32) -> Result<Option<Bytes>, FrameError> {
        if !self.welcomed {
            self.welcomed = true;
            let welcome = Header::Welcome {
                version: PROTOCOL_VERSION,
                max_frame: DEFAULT_MAX_FRAME,
            };
            return Ok(Some(payload(&welcome, &[])));
        }
        if let Some(first_call) = self.first_call.take() {
            self.id = first_call.await.expect("the first call");
        }
        // Gives the runtime its turn now and then, as a real transport does.
        tokio::task::consume_budget().await;
        let reply = Header::Reply {
            id: self.id,
            status: ReplyStatus::Ok,
        };
        Ok(Some(payload(
            &reply,
            &postcard::to_stdvec(&3i64).expect("encode"),
        )))
    }
}

/// Takes every frame the client writes; tells the id of its first call.
struct Sink(Option<oneshot::Sender<u64>>);

impl FrameWrite for Sink {
    async fn write_frames(&mut self, frames: &[Bytes]) -> Result<(), FrameError> {
        for frame in frames {
            let header = frame
                .get(4..)
                .and_then(|p| postcard::take_from_bytes::<Header>(p).ok());
            if let Some((Header::Call { id, .. }, _)) = header {
                if let Some(first_call) = self.0.take() {
                    let _ = first_call.send(id);
                }
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FrameError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_frames_does_not_hold_up_a_deadline() {
    let (first_call, called) = oneshot::channel();
    let reader = Flood {
        welcomed: false,
        first_call: Some(called),
        id: 0,
    };
    let mut config = ClientConfig::new();
    config.default_timeout(None);
    let client: ProbeClient = rpc_core::connect(reader, Sink(Some(first_call)), &config)
        .await
        .expect("connect");
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.add(1, 2).await }
    });
    // The first reply answers the first call; the flood goes on with replies to it.
    let answered = common::within("the first reply", first)
        .await
        .expect("join");
    assert_eq!(answered.expect("the first call"), 3);
    let patient = client.with_timeout(Some(Duration::from_millis(50)));
    let unanswered = common::within("the deadline", patient.add(2, 2)).await;
    assert!(
        matches!(unanswered, Err(RpcError::DeadlineExceeded)),
        "{unanswered:?}"
    );
}
