//! Windows named-pipe behaviour that has no Unix counterpart.
#![cfg(windows)]

mod common;

use std::process::Stdio;

use common::{within, Event, ProbeClient, RawPeer, TestServer};
use rpc_core::protocol::{Header, Rejection};
use rpc_core::{Client, ClientConfig, RpcError, ServerConfig};
use rpc_transport::{ConnectError, Endpoint};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// Connects a typed client, retrying while the server is at its limit.
async fn client_once_a_slot_frees(server: &TestServer) -> ProbeClient {
    within("a slot to free", async {
        loop {
            match rpc_transport::connect_with::<ProbeClient>(
                &server.endpoint,
                &ClientConfig::default(),
            )
            .await
            {
                Ok(client) => break client,
                // The slot frees when the server has seen the last client go.
                Err(ConnectError::Busy { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_limit_are_told_busy_and_the_server_recovers() {
    // One connection served at a time. The server still keeps an instance waiting: a client
    // over the limit is accepted on it and refused, and the next instance is created first.
    let server = TestServer::start_with(ServerConfig::new().max_connections(1));
    let first = server.client().await;
    assert_eq!(first.add(1, 1).await.expect("call"), 2);

    // Clients over the limit, one after another: each is told at once, with a typed error,
    // long before its wait for a busy pipe would end, and each used up the instance then
    // waiting.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let busy = rpc_transport::connect_with::<ProbeClient>(
            &server.endpoint,
            ClientConfig::new().connect_timeout(common::PATIENCE),
        )
        .await;
        assert!(matches!(busy, Err(ConnectError::Busy { .. })), "{busy:?}");
        assert!(
            started.elapsed() < common::PATIENCE / 2,
            "not told at once: {:?}",
            started.elapsed()
        );
    }

    // The served client is unaffected; once it leaves, capacity is back and a new client gets
    // in and is served. (Before the accept loop bounded the instances itself, the server
    // stopped here: the next instance could not be created while the last connection's
    // handle was still closing, and the pipe vanished, so clients saw "not found".)
    assert_eq!(
        first
            .add(2, 2)
            .await
            .expect("the served client is unaffected"),
        4
    );
    drop(first);
    let next = client_once_a_slot_frees(&server).await;
    assert_eq!(
        within("a call on the new client", next.add(3, 4))
            .await
            .expect("call"),
        7
    );
    assert!(!server.task.is_finished(), "the server stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_over_the_limit_is_refused_and_a_freed_slot_serves_the_next() {
    let server = TestServer::start_with(ServerConfig::new().max_connections(1));
    let first = server.client().await;
    assert_eq!(first.add(1, 1).await.expect("call"), 2);
    // This peer gets the waiting instance and says hello: it is answered that the server is
    // busy, and its pipe is closed.
    let mut peer = RawPeer::connect(&server.address).await;
    peer.send_hello().await;
    match peer.recv().await {
        Some((Header::Reject(Rejection::ServerBusy { max_connections: 1 }), _)) => {}
        other => panic!("expected a busy server, got {other:?}"),
    }
    assert_eq!(peer.until_closed().await, vec![], "closed after the answer");
    // The served client leaves: its slot serves the next peer, on a fresh instance.
    drop(first);
    let mut next = within("a slot to free", async {
        loop {
            let mut peer = RawPeer::connect(&server.address).await;
            peer.send_hello().await;
            match peer.recv().await {
                Some((Header::Welcome { .. }, _)) => break peer,
                Some((Header::Reject(Rejection::ServerBusy { .. }), _)) => {
                    tokio::task::yield_now().await;
                }
                other => panic!("expected a welcome, got {other:?}"),
            }
        }
    })
    .await;
    next.send_raw(&add_call(1)).await.expect("send");
    assert!(
        matches!(next.recv().await, Some((Header::Reply { id: 1, .. }, _))),
        "the peer in the freed slot is served"
    );
    // Its slot frees once the server has seen it go; then the server serves a client again.
    drop(next);
    let last = client_once_a_slot_frees(&server).await;
    assert_eq!(
        within("a call on the last client", last.add(40, 2))
            .await
            .expect("call"),
        42
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pipe_is_not_found() {
    let endpoint = Endpoint::new(&format!("nobody-{}", std::process::id())).expect("name");
    let result =
        rpc_transport::connect_with::<ProbeClient>(&endpoint, &ClientConfig::default()).await;
    assert!(
        matches!(result, Err(ConnectError::NotFound { .. })),
        "{result:?}"
    );
}

/// A complete frame calling `add(1, 2)` with request id `id`, length prefix included.
fn add_call(id: u64) -> Vec<u8> {
    let method = <ProbeClient as Client>::SERVICE
        .methods
        .iter()
        .find(|m| m.name == "add")
        .map(|m| m.id)
        .expect("add exists");
    let mut payload = postcard::to_stdvec(&Header::Call {
        id,
        method,
        deadline_us: None,
    })
    .expect("encode");
    payload.extend(postcard::to_stdvec(&(1i64, 2i64)).expect("args"));
    let mut frame = u32::try_from(payload.len())
        .expect("small")
        .to_le_bytes()
        .to_vec();
    frame.extend(payload);
    frame
}

/// A raw Windows client of the server at `address`, as other languages' clients open it:
/// `message` false is Node's libuv and .NET streams (byte read mode), true is a client in
/// message read mode. Each `write_all` is one pipe message.
async fn raw_windows_client(address: &str, message: bool) -> RawPeer {
    use tokio::net::windows::named_pipe::{ClientOptions, PipeMode};
    let mode = if message {
        PipeMode::Message
    } else {
        PipeMode::Byte
    };
    let pipe = ClientOptions::new()
        .pipe_mode(mode)
        .open(address)
        .expect("open the pipe");
    let (read, write) = tokio::io::split(pipe);
    RawPeer::from_halves(Box::new(read), Box::new(write))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_written_as_several_pipe_messages_is_served() {
    let server = TestServer::start();
    for message_mode in [false, true] {
        let mut peer = raw_windows_client(&server.address, message_mode).await;
        peer.send_hello().await;
        assert!(
            matches!(peer.recv().await, Some((Header::Welcome { .. }, _))),
            "welcome"
        );
        // One call in three messages, the first inside the length prefix.
        let call = add_call(1);
        for part in [&call[..2], &call[2..7], &call[7..]] {
            peer.send_raw(part).await.expect("send a part");
        }
        assert!(
            matches!(peer.recv().await, Some((Header::Reply { id: 1, .. }, _))),
            "a call split over three messages is answered (message read mode: {message_mode})"
        );
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_frames_in_one_pipe_message_are_served() {
    let server = TestServer::start();
    for message_mode in [false, true] {
        let mut peer = raw_windows_client(&server.address, message_mode).await;
        peer.send_hello().await;
        assert!(
            matches!(peer.recv().await, Some((Header::Welcome { .. }, _))),
            "welcome"
        );
        // Three calls in one message, the last one's end in a message of its own.
        let mut all = add_call(1);
        all.extend(add_call(2));
        let third = add_call(3);
        all.extend(&third[..5]);
        peer.send_raw(&all).await.expect("send");
        peer.send_raw(&third[5..]).await.expect("send the rest");
        let mut ids = Vec::new();
        for _ in 0..3 {
            match peer.recv().await {
                Some((Header::Reply { id, .. }, _)) => ids.push(id),
                other => panic!("expected a reply, got {other:?}"),
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3], "message read mode: {message_mode}");
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_lies_about_its_length_closes_only_that_connection() {
    let server = TestServer::start();
    let bystander = server.client().await;
    let mut peer = raw_windows_client(&server.address, false).await;
    peer.send_hello().await;
    assert!(
        matches!(peer.recv().await, Some((Header::Welcome { .. }, _))),
        "welcome"
    );
    // A length far over the maximum: refused before anything is set aside for it.
    let mut lie = u32::MAX.to_le_bytes().to_vec();
    lie.extend(&add_call(1)[4..]);
    peer.send_raw(&lie).await.expect("send");
    assert!(
        !peer
            .until_closed()
            .await
            .iter()
            .any(|header| matches!(header, Header::Reply { .. })),
        "no reply to a frame over the maximum"
    );
    assert_eq!(bystander.add(20, 22).await.expect("bystander served"), 42);
    server.assert_serving().await;
}

/// The variable that turns [`child_server_for_the_kill_test`] into a server process.
const CHILD_SERVER: &str = "RPC_TEST_CHILD_SERVER";

/// Not a test of its own: the server process that
/// `server_process_killed_mid_call_fails_the_call` starts (this test binary, running only this
/// function) and kills. With `RPC_TEST_CHILD_SERVER=<name>` it serves the probe service on
/// `<name>` and reports on its standard output until killed; without it, it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by server_process_killed_mid_call_fails_the_call"]
async fn child_server_for_the_kill_test() {
    let Some(name) = std::env::var_os(CHILD_SERVER) else {
        return;
    };
    let endpoint = Endpoint::new(&name.to_string_lossy()).expect("name");
    let mut server = TestServer::start_at(endpoint, &ServerConfig::default());
    println!("child: ready");
    while let Some(event) = server.events.recv().await {
        if let Event::SleepStarted(tag) = event {
            println!("child: started {tag}");
        }
    }
}

/// Waits for the line `want` on the child's output, skipping the test harness's own lines.
async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, want: &str) {
    within(&format!("{want:?} from the server process"), async {
        loop {
            match lines.next_line().await {
                // The harness prints "test <name> ... " without a line break before it.
                Ok(Some(line)) if line.trim_end().ends_with(want) => return,
                Ok(Some(_)) => continue,
                other => panic!("the server process ended before {want:?}: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_process_killed_mid_call_fails_the_call() {
    let name = format!("killed-{}", std::process::id());
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_server_for_the_kill_test",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SERVER, &name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server process");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    expect_line(&mut lines, "child: ready").await;

    let endpoint = Endpoint::new(&name).expect("name");
    let mut config = ClientConfig::new();
    config.default_timeout(None);
    let client: ProbeClient = within(
        "connect to the server process",
        rpc_transport::connect_with(&endpoint, &config),
    )
    .await
    .expect("connect");
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(1, 3_600_000).await }
    });
    expect_line(&mut lines, "child: started 1").await;

    // The server process dies with the call in flight: no goodbye, the pipe just breaks.
    within("the server process to die", child.kill())
        .await
        .expect("kill");
    let result = within("the call to fail", call).await.expect("join");
    assert!(
        matches!(result, Err(RpcError::ConnectionClosed)),
        "{result:?}"
    );
    assert!(client.handle().is_closed());
    assert!(
        matches!(
            client.add(1, 1).await,
            Err(RpcError::ConnectionClosed | RpcError::Frame(_))
        ),
        "a call after the death fails at once"
    );
    drop(client);
    // Nothing is left of the pipe.
    let again = within(
        "connect to the dead server",
        rpc_transport::connect_with::<ProbeClient>(&endpoint, &config),
    )
    .await;
    assert!(
        matches!(again, Err(ConnectError::NotFound { .. })),
        "{again:?}"
    );
}
