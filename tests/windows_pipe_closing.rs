//! How named pipes end on Windows: an empty message is not the end of the pipe, a reply the
//! client never reads does not keep the server's end of the pipe alive after the connection is
//! over, and a client that comes while a server shuts down is told so at once, also after its
//! connections have drained.
#![cfg(windows)]

mod common;

use std::time::Duration;

use common::{within, Event, ProbeClient, ProbeImpl, ProbeServer, RawPeer, TestServer, PATIENCE};
use rpc_core::protocol::{GoodbyeReason, Header};
use rpc_core::{ClientConfig, RpcError, ServerConfig};
use rpc_transport::{ConnectError, Server};
use tokio::net::windows::named_pipe::{ClientOptions, PipeMode};

/// A peer may write an empty message at any time (this crate's own ends write one as they
/// close): it reads as nothing, like the end of the pipe, and must not be taken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_message_is_not_the_end_of_the_pipe() {
    let server = TestServer::start();
    let pipe = ClientOptions::new()
        .pipe_mode(PipeMode::Message)
        .open(&server.address)
        .expect("open the pipe");
    within("the pipe takes writes", pipe.writable())
        .await
        .expect("writable");
    assert_eq!(pipe.try_write(&[]).expect("an empty message"), 0);
    let (read, write) = tokio::io::split(pipe);
    let mut peer = RawPeer::from_halves(Box::new(read), Box::new(write));
    peer.send_hello().await;
    assert!(
        matches!(peer.recv().await, Some((Header::Welcome { .. }, _))),
        "the handshake goes on after the empty message"
    );
    peer.send_raw(&RawPeer::call_frame(1, "add", &(40i64, 2i64)))
        .await
        .expect("send a call");
    match peer.recv().await {
        Some((Header::Reply { id: 1, .. }, body)) => {
            assert_eq!(postcard::from_bytes::<i64>(&body).expect("an i64"), 42);
        }
        other => panic!("expected the reply, got {other:?}"),
    }
}

/// A client that asks for a reply far larger than the pipe's buffer, never reads it, says
/// goodbye and keeps its end open: once the server's linger has passed, the write is given up
/// and the server's end closes, so that the instance and the unsent bytes are not kept for as
/// long as the client likes. Seen from outside: after the server shuts down, its name can be
/// bound again while the client still holds its end. (Wine 8 takes every write whole into the
/// pipe, whatever its buffer, so no write is ever left under way there and this passes either
/// way; on Windows the write waits for the reader.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_never_read_does_not_keep_the_pipe_after_the_connection() {
    let server = TestServer::start();
    let mut peer = RawPeer::handshake(&server.address).await;
    let data = vec![7u8; 512 * 1024];
    peer.send_raw(&RawPeer::call_frame(1, "echo", &(data,)))
        .await
        .expect("send the call");
    peer.send_header(&Header::Goodbye {
        reason: GoodbyeReason::ShuttingDown,
    })
    .await;
    server.shutdown.cancel();
    within("the server ends", server.task)
        .await
        .expect("join")
        .expect("serve");
    let again = Server::bind_with(
        &server.endpoint,
        ProbeServer::new(ProbeImpl::new()),
        &ServerConfig::default(),
    );
    assert!(again.is_ok(), "the name is free again: {:?}", again.err());
    drop(peer);
}

/// A client that comes while a shutting-down server's connections drain is told at once that
/// the server is shutting down, as on Unix (where the endpoint is gone at once): the pipe's
/// name lives on with the instances still draining, and such a client waited for a free one
/// until its connect timeout, then was told the server is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_during_the_drain_is_told_the_server_is_shutting_down() {
    let mut server = TestServer::start();
    let busy = server.client().await;
    // A call in flight keeps its connection, and the drain, going.
    let call = tokio::spawn(async move { busy.sleep(1, 60_000).await });
    server.expect_event(&Event::SleepStarted(1)).await;
    server.shutdown.cancel();
    let mut config = ClientConfig::new();
    config.connect_timeout(PATIENCE * 2);
    let result = within(
        "the connect is answered",
        rpc_transport::connect_with::<ProbeClient>(&server.endpoint, &config),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Handshake(RpcError::ClosedByPeer(
                GoodbyeReason::ShuttingDown
            )))
        ),
        "{:?}",
        result.err()
    );
    call.abort();
}

/// A client that comes after the connections have drained, while the server still answers a
/// client it turned away during the drain, is told that the server is shutting down too: it
/// used to be left at an instance of the pipe that nobody read until the server closed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_after_the_drain_is_told_too() {
    // The drain ends at its timeout, which closes the connection of a call that never ends:
    // the client sees when the server stops waiting for its connections.
    let mut server =
        TestServer::start_with(ServerConfig::new().shutdown_timeout(Duration::from_millis(100)));
    let busy = server.client().await;
    let call = tokio::spawn(async move { busy.sleep(1, 60_000).await });
    server.expect_event(&Event::SleepStarted(1)).await;
    server.shutdown.cancel();
    // A client that never says hello: the server's answer to it waits up to two seconds.
    let silent = ClientOptions::new()
        .pipe_mode(PipeMode::Message)
        .open(&server.address)
        .expect("open the pipe");
    let mut config = ClientConfig::new();
    config.connect_timeout(PATIENCE * 2);
    let shutting_down = |result: &Result<ProbeClient, ConnectError>| {
        matches!(
            result,
            Err(ConnectError::Handshake(RpcError::ClosedByPeer(
                GoodbyeReason::ShuttingDown
            )))
        )
    };
    // The next instance waits only once the silent client's is accepted: a client turned
    // away now shows that the server is answering the silent one.
    let during = within(
        "a client during the drain",
        rpc_transport::connect_with::<ProbeClient>(&server.endpoint, &config),
    )
    .await;
    assert!(shutting_down(&during), "{:?}", during.err());
    let ended = within("the drain's timeout", call).await.expect("join");
    assert!(
        matches!(ended, Err(RpcError::ConnectionClosed)),
        "{ended:?}"
    );
    let after = within(
        "a client after the drain",
        rpc_transport::connect_with::<ProbeClient>(&server.endpoint, &config),
    )
    .await;
    assert!(shutting_down(&after), "{:?}", after.err());
    drop(silent);
}
