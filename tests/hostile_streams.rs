//! Clients that break the rules of streams: each is a typed protocol error that closes that one
//! connection, and the server keeps serving. Servers that break them are in
//! `hostile_stream_servers.rs`.

mod common;

use common::{frame, stream_item, within, RawPeer, TestServer};
use rpc_core::protocol::{GoodbyeReason, Header, ReplyStatus, WireError};
use rpc_core::ServerConfig;

/// The server's answer to a frame that breaks the rules of streams: a goodbye for a protocol
/// violation, then the end of the connection; other clients go on.
async fn closes_with_a_violation(server: &TestServer, mut peer: RawPeer) {
    let seen = peer.until_closed().await;
    assert!(
        seen.contains(&Header::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        }),
        "{seen:?}"
    );
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_beyond_what_can_be_counted_closes_the_connection() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&RawPeer::call_frame(1, "ticks", &(5u32,)))
        .await
        .expect("send");
    // More than the server counts for one stream (256 MiB).
    let credit = frame(
        &Header::Credit {
            stream: 1,
            bytes: u32::MAX,
        },
        &[],
    );
    peer.send_raw(&credit).await.expect("send");
    closes_with_a_violation(&server, peer).await;
}

/// Items and ends of streams that are not open: never opened, or for a call that does not
/// take a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_a_stream_that_is_not_open_close_the_connection() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&frame(&Header::StreamItem { stream: 1 }, &[1]))
        .await
        .expect("send");
    closes_with_a_violation(&server, peer).await;
    let mut peer = RawPeer::handshake(&server.address).await;
    let end = Header::StreamEnd {
        stream: 9,
        error: None,
    };
    peer.send_raw(&frame(&end, &[])).await.expect("send");
    closes_with_a_violation(&server, peer).await;
    // A call of a method without a stream from the client, then an item for it.
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&RawPeer::call_frame(3, "sleep", &(1u32, 60_000u64)))
        .await
        .expect("send");
    peer.send_raw(&frame(&Header::StreamItem { stream: 3 }, &[1]))
        .await
        .expect("send");
    closes_with_a_violation(&server, peer).await;
}

/// Opens `sum` as call 1 and waits for the server's first credit for it.
async fn open_sum(server: &TestServer) -> (RawPeer, u32) {
    open(server, "sum").await
}

/// Opens `method` (which takes a stream) as call 1 and waits for the server's first credit.
async fn open(server: &TestServer, method: &str) -> (RawPeer, u32) {
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&RawPeer::call_frame(1, method, &()))
        .await
        .expect("send");
    match within("the first credit", peer.recv()).await {
        Some((Header::Credit { stream: 1, bytes }, _)) => (peer, bytes),
        other => panic!("expected credit, got {other:?}"),
    }
}

/// A client that sends more items than it was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_beyond_the_credit_close_the_connection() {
    let server = TestServer::start();
    // A handler that never takes an item grants nothing more: once the items sent spend the
    // first credit (in bytes of item frames), the next is one too many. One write per frame:
    // a Windows pipe message holds one frame.
    let (mut peer, credit) = open(&server, "ignore").await;
    let large = frame(&Header::StreamItem { stream: 1 }, &[0; 64 * 1024]);
    let frame_len = u32::try_from(large.len() - 4).expect("small");
    for _ in 0..=credit.div_ceil(frame_len) {
        if peer.send_raw(&large).await.is_err() {
            // The server has closed the connection already.
            break;
        }
    }
    closes_with_a_violation(&server, peer).await;
}

/// Calls `add(a, b)` as call `id` and checks that the connection answers it with the sum;
/// credit and stops for the streams of earlier calls may come first.
async fn add_answers(peer: &mut RawPeer, id: u64, a: i64, b: i64) {
    peer.send_raw(&RawPeer::call_frame(id, "add", &(a, b)))
        .await
        .expect("send");
    loop {
        match within("the answer", peer.recv()).await {
            Some((
                Header::Reply {
                    id: answered,
                    status: ReplyStatus::Ok,
                },
                body,
            )) if answered == id => {
                assert_eq!(postcard::from_bytes::<i64>(&body).expect("a sum"), a + b);
                return;
            }
            Some((Header::Credit { .. } | Header::StreamStop { .. }, _)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Ends stream 1 (of a `sum` call 1) and waits for the sum, which must be `expected`.
async fn end_and_expect_sum(peer: &mut RawPeer, expected: u64) {
    let end = Header::StreamEnd {
        stream: 1,
        error: None,
    };
    peer.send_raw(&frame(&end, &[])).await.expect("send");
    loop {
        match within("the answer", peer.recv()).await {
            Some((
                Header::Reply {
                    id: 1,
                    status: ReplyStatus::Ok,
                },
                body,
            )) => {
                assert_eq!(postcard::from_bytes::<u64>(&body).expect("a sum"), expected);
                return;
            }
            Some((Header::Credit { .. }, _)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An item after the stream's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_after_the_end_closes_the_connection() {
    let server = TestServer::start();
    let (mut peer, _) = open_sum(&server).await;
    peer.send_raw(&stream_item(1, 5)).await.expect("send");
    // The sum is answered (5), then the item after the end is a violation.
    end_and_expect_sum(&mut peer, 5).await;
    peer.send_raw(&stream_item(1, 6)).await.expect("send");
    closes_with_a_violation(&server, peer).await;
}

fn part(stream: u64, len: usize) -> Vec<u8> {
    frame(&Header::StreamPart { stream }, &vec![0; len])
}

/// A part of an item of a stream that is not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_of_a_stream_that_is_not_open_closes_the_connection() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&part(1, 10)).await.expect("send");
    closes_with_a_violation(&server, peer).await;
}

/// A stream that ends between the parts of an item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_inside_an_item_in_parts_closes_the_connection() {
    let server = TestServer::start();
    let (mut peer, _) = open_sum(&server).await;
    peer.send_raw(&part(1, 10)).await.expect("send");
    let end = Header::StreamEnd {
        stream: 1,
        error: None,
    };
    peer.send_raw(&frame(&end, &[])).await.expect("send");
    closes_with_a_violation(&server, peer).await;
}

/// Parts that add up to more than the server's maximum frame, each of them well within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_in_parts_longer_than_the_maximum_frame_closes_the_connection() {
    let server = TestServer::start_with(ServerConfig::new().max_frame(200 * 1024));
    let (mut peer, _) = open(&server, "ignore").await;
    for _ in 0..4 {
        if peer.send_raw(&part(1, 64 * 1024)).await.is_err() {
            break;
        }
    }
    closes_with_a_violation(&server, peer).await;
}

/// A part that starts an item once the credit is spent: parts after the first need none, the
/// first does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_starting_an_item_beyond_the_credit_closes_the_connection() {
    let server = TestServer::start();
    let (mut peer, credit) = open(&server, "ignore").await;
    // One item in parts overdraws the whole window: 1 byte of credit starts any item.
    let parts = usize::try_from(credit).expect("fits") / (64 * 1024) + 1;
    for _ in 0..parts {
        peer.send_raw(&part(1, 64 * 1024)).await.expect("send");
    }
    peer.send_raw(&stream_item(1, 1)).await.expect("send");
    // The item is whole and the credit overdrawn: nothing more may start.
    peer.send_raw(&part(1, 10)).await.ok();
    closes_with_a_violation(&server, peer).await;
}

/// Items in parts from a raw client are put back together: the server sums them as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_in_parts_are_put_back_together() {
    let server = TestServer::start();
    let (mut peer, _) = open_sum(&server).await;
    // 300,000 as a postcard varint (e0 a7 12), cut after its first byte and after its second.
    let encoded = postcard::to_stdvec(&300_000u32).expect("encode");
    peer.send_raw(&frame(&Header::StreamPart { stream: 1 }, &encoded[..1]))
        .await
        .expect("send");
    peer.send_raw(&frame(&Header::StreamPart { stream: 1 }, &encoded[1..2]))
        .await
        .expect("send");
    peer.send_raw(&frame(&Header::StreamItem { stream: 1 }, &encoded[2..]))
        .await
        .expect("send");
    peer.send_raw(&stream_item(1, 5)).await.expect("send");
    end_and_expect_sum(&mut peer, 300_005).await;
    server.assert_serving().await;
}

/// An item that does not decode fails its call with a typed error; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_does_not_decode_fails_the_call() {
    let server = TestServer::start();
    let (mut peer, _) = open_sum(&server).await;
    // A varint that never ends is no u32.
    let bad = frame(&Header::StreamItem { stream: 1 }, &[0xff; 8]);
    peer.send_raw(&bad).await.expect("send");
    loop {
        match within("the answer", peer.recv()).await {
            Some((Header::Reply { id: 1, status }, _)) => {
                assert!(
                    matches!(status, ReplyStatus::Failed(WireError::BadArguments(_))),
                    "{status:?}"
                );
                break;
            }
            Some((Header::Credit { .. } | Header::StreamStop { .. }, _)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The client ends its stream, as the protocol asks, and calls again.
    let end = Header::StreamEnd {
        stream: 1,
        error: None,
    };
    peer.send_raw(&frame(&end, &[])).await.expect("send");
    add_answers(&mut peer, 2, 2, 3).await;
    server.assert_serving().await;
}

/// Credit for a stream that is not open (it may have just ended) is ignored; the stream that
/// is open gets its items, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_for_an_unknown_stream_is_ignored() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    peer.send_raw(&frame(
        &Header::Credit {
            stream: 77,
            bytes: 3,
        },
        &[],
    ))
    .await
    .expect("send");
    peer.send_raw(&RawPeer::call_frame(1, "ticks", &(3u32,)))
        .await
        .expect("send");
    peer.send_raw(&frame(
        &Header::Credit {
            stream: 1,
            bytes: 1024,
        },
        &[],
    ))
    .await
    .expect("send");
    let mut items = Vec::new();
    loop {
        match peer.recv().await {
            Some((
                Header::Reply {
                    id: 1,
                    status: ReplyStatus::Ok,
                },
                _,
            )) => {}
            Some((Header::StreamItem { stream: 1 }, body)) => {
                items.push(postcard::from_bytes::<u32>(&body).expect("an item"));
            }
            Some((
                Header::StreamEnd {
                    stream: 1,
                    error: None,
                },
                _,
            )) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(items, [0, 1, 2]);
}

/// A call of a method that takes a stream, refused for its arguments: the reply says why, and
/// the server sends nothing for the stream it never opened (no stop, which a client would
/// answer with an end of a stream the server does not know: a violation that would close the
/// connection). The connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_call_refused_for_its_arguments_leaves_the_connection_open() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    // `sum` takes no arguments besides its stream: a byte more does not decode.
    peer.send_raw(&RawPeer::call_frame(1, "sum", &(7u8,)))
        .await
        .expect("send");
    peer.send_raw(&RawPeer::call_frame(2, "add", &(2i64, 3i64)))
        .await
        .expect("send");
    let mut refused = None;
    let mut stops = 0;
    // The stop, if any, is queued before the reply to the next call.
    loop {
        match within("the answers", peer.recv()).await {
            Some((Header::Reply { id: 1, status }, _)) => refused = Some(status),
            Some((Header::StreamStop { stream: 1 }, _)) => {
                // What a client does with a stop: it ends the stream.
                stops += 1;
                let end = Header::StreamEnd {
                    stream: 1,
                    error: None,
                };
                peer.send_raw(&frame(&end, &[])).await.expect("send");
            }
            Some((
                Header::Reply {
                    id: 2,
                    status: ReplyStatus::Ok,
                },
                body,
            )) => {
                assert_eq!(postcard::from_bytes::<i64>(&body).expect("a sum"), 5);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        matches!(
            refused,
            Some(ReplyStatus::Failed(WireError::BadArguments(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(stops, 0, "a stop for a stream that was never opened");
    // And the connection still serves calls.
    add_answers(&mut peer, 3, 4, 4).await;
    server.assert_serving().await;
}

/// A client whose side of the stream failed ends it with the error: the call fails with that
/// error, and the handler does not answer as if the items sent so far were the whole stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ended_with_an_error_fails_its_call() {
    let server = TestServer::start();
    let (mut peer, _) = open_sum(&server).await;
    peer.send_raw(&stream_item(1, 5)).await.expect("send");
    let end = Header::StreamEnd {
        stream: 1,
        error: Some(WireError::EncodeFailed),
    };
    peer.send_raw(&frame(&end, &[])).await.expect("send");
    loop {
        match within("the answer", peer.recv()).await {
            Some((Header::Reply { id: 1, status }, _)) => {
                assert_eq!(status, ReplyStatus::Failed(WireError::EncodeFailed));
                break;
            }
            Some((Header::Credit { .. }, _)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    add_answers(&mut peer, 2, 2, 3).await;
    server.assert_serving().await;
}
