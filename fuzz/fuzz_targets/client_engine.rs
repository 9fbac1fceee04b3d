//! The client engine against a malicious server. A fake server reads the hello, answers with a
//! valid welcome (or a welcome with another frame limit or version, or arbitrary bytes, or
//! nothing), then writes arbitrary bytes in pieces, each after the next frame from the client
//! (or a millisecond without one), so that replies can meet the calls they name. Then it
//! closes, keeps reading until the client closes, or stalls: it neither reads nor closes.
//! Meanwhile the client connects and makes up to four calls with short deadlines; then every
//! handle is dropped.
//!
//! The runtime is a current-thread one with paused time: deadlines fire exactly, at no
//! wall-clock cost.
//!
//! Oracles:
//! * connecting returns (a client or a typed error) within the handshake timeout;
//! * every call returns (a value or a typed `RpcError`) by its deadline;
//! * once every handle is dropped, the client's tasks end whatever the server does: after a
//!   few seconds of virtual time no task is alive but the fake server's, and a server that
//!   reads until the client closes has seen it close.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rpc_core::frame::{FrameRead, FrameReader, FrameWriter};
use rpc_core::protocol::{Header, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use rpc_core::{ClientConfig, RpcError};
use rpc_fuzz::{frame, paused_runtime, settle, Nested, TargetClient};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The client's handshake timeout.
const HANDSHAKE: Duration = Duration::from_secs(1);

/// What the fake server answers to the hello.
#[derive(Debug, Arbitrary)]
enum Opening {
    Nothing,
    Welcome,
    WelcomeMax(u32),
    WelcomeVersion(u16),
    Raw(Vec<u8>),
}

/// What the fake server does once its bytes are written.
#[derive(Debug, Clone, Copy, Arbitrary, PartialEq)]
enum After {
    /// Closes the connection.
    Close,
    /// Reads until the client closes.
    Drain,
    /// Neither reads nor closes, until the test lets it go.
    Stall,
}

/// A call the client makes; the number is its deadline in milliseconds (at least 1).
#[derive(Debug, Arbitrary)]
enum Call {
    Add(u16),
    Div(u16),
    Echo(u8, u16),
    Depth(u16),
    Sleep(u16),
    Record,
}

#[derive(Debug, Arbitrary)]
struct Input {
    opening: Opening,
    after: After,
    pieces: Vec<Vec<u8>>,
    calls: Vec<Call>,
}

fuzz_target!(|input: Input| {
    paused_runtime().block_on(run(input));
});

async fn run(input: Input) {
    let (client, server) = tokio::io::duplex(512);
    let (release, released) = oneshot::channel::<()>();
    let after = input.after;
    let mut fake = tokio::spawn(fake_server(
        server,
        input.opening,
        input.pieces,
        after,
        released,
    ));

    let (client_read, client_write) = tokio::io::split(client);
    let mut config = ClientConfig::new();
    config
        .handshake_timeout(HANDSHAKE)
        .max_frame(4096)
        .max_decode_depth(8)
        .default_timeout(Some(Duration::from_secs(1)));
    let started = Instant::now();
    let connecting = rpc_core::connect::<TargetClient, _, _>(
        FrameReader::new(client_read),
        FrameWriter::new(client_write),
        &config,
    );
    let Ok(connected) = tokio::time::timeout(HANDSHAKE + Duration::from_secs(1), connecting).await
    else {
        panic!("connecting did not return within the handshake timeout");
    };
    assert!(
        started.elapsed() <= HANDSHAKE,
        "connecting took {:?}",
        started.elapsed()
    );

    if let Ok(client) = connected {
        let mut calls = Vec::new();
        for call in input.calls.into_iter().take(4) {
            let client = client.clone();
            calls.push(tokio::spawn(async move {
                let deadline = deadline_of(&call);
                let client = client.with_timeout(Some(deadline));
                let started = Instant::now();
                let result = make(&client, call).await;
                (deadline, started.elapsed(), result)
            }));
        }
        drop(client);
        for call in calls {
            let Ok(joined) = tokio::time::timeout(Duration::from_secs(70), call).await else {
                panic!("a call did not return by its deadline");
            };
            let (deadline, took, result) = joined.expect("the call's task");
            assert!(
                took <= deadline,
                "a call with a deadline of {deadline:?} returned after {took:?}: {result:?}"
            );
        }
    }

    // Every handle is gone: the client's tasks must end whatever the server does.
    settle(Duration::from_secs(5)).await;
    let server_alive = usize::from(!fake.is_finished());
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(
        alive, server_alive,
        "client tasks alive 5 s after the last handle was dropped (server {after:?})"
    );
    if after == After::Drain {
        assert_eq!(server_alive, 0, "the client never closed its connection");
    }
    let _ = release.send(());
    if tokio::time::timeout(Duration::from_secs(5), &mut fake)
        .await
        .is_err()
    {
        // Blocked writing to a client that has gone: not the client's task.
        fake.abort();
    }
    settle(Duration::from_millis(1)).await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0,
        "tasks alive after the server went away"
    );
}

fn deadline_of(call: &Call) -> Duration {
    let ms = match call {
        Call::Add(ms) | Call::Div(ms) | Call::Echo(_, ms) | Call::Depth(ms) | Call::Sleep(ms) => {
            *ms
        }
        Call::Record => 1000,
    };
    Duration::from_millis(u64::from(ms.max(1)))
}

/// Makes one call; the value does not matter (the server is lying), only that it returns.
async fn make(client: &TargetClient, call: Call) -> Result<(), RpcError> {
    match call {
        Call::Add(_) => client.add(1, 2).await.map(drop),
        Call::Div(_) => client.div(7, 0).await.map(drop),
        Call::Echo(len, _) => client.echo(vec![len; usize::from(len)]).await.map(drop),
        Call::Depth(_) => client
            .depth(Nested::Node(Box::new(Nested::Leaf)))
            .await
            .map(drop),
        Call::Sleep(ms) => client.sleep(u32::from(ms)).await.map(drop),
        Call::Record => client.record("line".to_owned()).await,
    }
}

/// The malicious server.
async fn fake_server(
    io: tokio::io::DuplexStream,
    opening: Opening,
    pieces: Vec<Vec<u8>>,
    after: After,
    released: oneshot::Receiver<()>,
) {
    let (read, mut write) = tokio::io::split(io);
    let mut reader = FrameReader::new(read);
    let mut reading = matches!(reader.read_frame(DEFAULT_MAX_FRAME).await, Ok(Some(_)));
    let opening = match opening {
        Opening::Nothing => Vec::new(),
        Opening::Welcome => welcome(PROTOCOL_VERSION, DEFAULT_MAX_FRAME),
        Opening::WelcomeMax(max) => welcome(PROTOCOL_VERSION, max),
        Opening::WelcomeVersion(version) => welcome(version, DEFAULT_MAX_FRAME),
        Opening::Raw(bytes) => bytes,
    };
    if write.write_all(&opening).await.is_err() {
        return;
    }
    for piece in pieces {
        if reading {
            tokio::select! {
                frame = reader.read_frame(DEFAULT_MAX_FRAME) => {
                    reading = matches!(frame, Ok(Some(_)));
                }
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        if write.write_all(&piece).await.is_err() {
            return;
        }
    }
    match after {
        After::Close => {}
        After::Drain => {
            while reading {
                reading = matches!(reader.read_frame(DEFAULT_MAX_FRAME).await, Ok(Some(_)));
            }
        }
        After::Stall => {
            let _ = released.await;
        }
    }
}

fn welcome(version: u16, max_frame: u32) -> Vec<u8> {
    frame(&postcard::to_stdvec(&Header::Welcome { version, max_frame }).expect("welcome encodes"))
}
