//! FIFO pairs: a server and clients that meet by name over two one-way pipes.
#![cfg(unix)]

mod common;
mod fifo_support;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::entries;
use common::{within, ProbeClient, ProbeImpl, ProbeServer};
use fifo_support::{connect, mkfifo, on_thread, serve, serve_with, until, Served};
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::pair::{self, PairServer};
use rpc_transport::unix::EndpointExt;
use rpc_transport::{BindError, ConnectError, Endpoint, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_over_a_fifo_pair() {
    let served = serve();
    for path in [&served.input, &served.output] {
        let meta = std::fs::symlink_metadata(path).expect("fifo exists");
        assert!(meta.file_type().is_fifo(), "{}", path.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let client = connect(&served).await.expect("connect");
    assert_eq!(client.add(2, 3).await.expect("add"), 5);
    let data = vec![9u8; 1 << 20];
    assert_eq!(client.echo(data.clone()).await.expect("echo"), data);
    let answers = futures_util::future::join_all((0..200).map(|i| client.add(i, i))).await;
    for (i, answer) in (0..200).zip(answers) {
        assert_eq!(answer.expect("add"), 2 * i);
    }

    // The next client is served once this one is gone.
    drop(client);
    let next = connect(&served).await;
    let next = next.expect("connect again");
    assert_eq!(next.add(1, 1).await.expect("add"), 2);
    served.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_client_is_busy_not_stuck() {
    let served = serve();
    let first = connect(&served).await.expect("connect");
    assert_eq!(first.add(1, 2).await.expect("add"), 3);
    let started = std::time::Instant::now();
    let second = pair::connect::<ProbeClient>(
        &served.endpoint,
        ClientConfig::new().connect_timeout(std::time::Duration::from_millis(200)),
    )
    .await;
    assert!(started.elapsed() < common::PATIENCE);
    assert!(
        matches!(second, Err(ConnectError::Busy { .. })),
        "{second:?}"
    );
    assert_eq!(first.add(3, 4).await.expect("first unaffected"), 7);
    served.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_not_found_at_once() {
    let served = serve();
    let Served {
        endpoint,
        input,
        output,
        task,
        _dir,
    } = served;
    task.abort();
    let _ = task.await;
    // The server removed its FIFOs.
    assert!(!input.exists() && !output.exists());
    let gone = pair::connect::<ProbeClient>(&endpoint, &ClientConfig::default()).await;
    assert!(
        matches!(gone, Err(ConnectError::NotFound { .. })),
        "{gone:?}"
    );

    // FIFOs left behind by a server that died: still not found, without waiting.
    for path in [&input, &output] {
        mkfifo(path);
    }
    let stale = within(
        "a stale pair to be refused",
        pair::connect::<ProbeClient>(&endpoint, &ClientConfig::default()),
    )
    .await;
    assert!(
        matches!(stale, Err(ConnectError::NotFound { .. })),
        "{stale:?}"
    );
    // And a new server reclaims them.
    let server = PairServer::bind(&endpoint).expect("bind over stale FIFOs");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_opening_in_the_wrong_order_does_not_hang() {
    let served = serve();
    let (input, output) = (served.input.clone(), served.output.clone());
    // A raw peer writes first and opens its reading end only then, with blocking opens: the
    // order in which two careless programs deadlock. Here the server waits for it to open its
    // reading end, reads its bytes, finds they are not a hello and closes the pair: the peer
    // reads end-of-file instead of hanging.
    let got = on_thread("the careless peer to be answered", move || {
        let mut to_server = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .expect("open the server's FIFO");
        to_server.write_all(b"hello").expect("write");
        let mut from_server = std::fs::File::open(&output).expect("open our FIFO");
        let mut got = Vec::new();
        from_server.read_to_end(&mut got).expect("read");
        got
    })
    .await;
    assert!(got.is_empty(), "unexpected answer {got:?}");

    // The server goes on with the next client.
    let client = connect(&served).await.expect("connect");
    assert_eq!(client.add(20, 22).await.expect("add"), 42);
    served.task.abort();
}

/// A client that takes the connection as a client does (the client lock, its reading end, the
/// server's FIFO) and sends nothing is dropped after the server's handshake timeout, counted
/// from then: it reads end-of-file, and the client waiting behind it gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let served = serve_with(ServerConfig::new().handshake_timeout(Duration::from_millis(300)));
    let lock_path = served._dir.path().join(".fifo-probe.client.lock");
    let lock = std::fs::File::create(&lock_path).expect("lock file");
    lock.try_lock().expect("the client lock");
    let from_server = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&served.output)
        .expect("open our FIFO");
    let input = served.input.clone();
    let to_server = on_thread("the server to open its FIFO", move || {
        std::fs::OpenOptions::new().write(true).open(&input)
    })
    .await
    .expect("open the server's FIFO");
    let endpoint = served.endpoint.clone();
    let next = tokio::spawn(async move {
        pair::connect::<ProbeClient>(&endpoint, &ClientConfig::default()).await
    });
    within("the silent client to be dropped", async {
        let mut buf = [0u8; 64];
        loop {
            from_server.readable().await.expect("readable");
            match from_server.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => panic!("unexpected answer {:?}", &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading our FIFO: {e}"),
            }
        }
    })
    .await;
    // It leaves as a client does: FIFOs closed, then its lock file removed and unlocked.
    drop((from_server, to_server));
    std::fs::remove_file(&lock_path).expect("remove the lock file");
    drop(lock);
    let next = within("the next client", next).await.expect("task");
    assert_eq!(next.expect("connect").add(1, 2).await.expect("add"), 3);
    served.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_has_one_server() {
    let served = serve();
    let second = PairServer::bind(&served.endpoint);
    assert!(
        matches!(second, Err(BindError::AddrInUse { .. })),
        "{second:?}"
    );
    served.task.abort();
}

/// Endpoints named like the pair's connection locks (`fifo-probe.session`, `fifo-probe.client`)
/// are other names: their servers and the pair's serve side by side, and none takes another's
/// lock. Before, `fifo-probe.session` owned `fifo-probe.session.lock`, which the pair took for
/// its session lock: the pair's clients were told it was busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_like_the_pairs_locks_are_other_names() {
    let served = serve();
    let dir = served._dir.path();
    let mut neighbours = Vec::new();
    for name in ["fifo-probe.session", "fifo-probe.client"] {
        let endpoint = Endpoint::new(name).expect("name").in_dir(dir);
        let server = Server::bind_with(
            &endpoint,
            ProbeServer::new(ProbeImpl::new()),
            &ServerConfig::default(),
        )
        .expect("bind beside the pair");
        neighbours.push((endpoint, tokio::spawn(server.run())));
    }
    let mut patient = ClientConfig::new();
    patient.connect_timeout(Duration::from_secs(30));
    let client: ProbeClient = within(
        "the pair's client",
        pair::connect(&served.endpoint, &patient),
    )
    .await
    .expect("connect to the pair");
    assert_eq!(client.add(1, 2).await.expect("add"), 3);
    for (endpoint, _) in &neighbours {
        let neighbour: ProbeClient = within(
            "a neighbour's client",
            rpc_transport::connect_with(endpoint, &patient),
        )
        .await
        .expect("connect to a neighbour");
        assert_eq!(neighbour.add(2, 2).await.expect("add"), 4);
    }
    served.task.abort();
}

/// The names of the entries of `dir`, sorted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_leaves_nothing_behind() {
    let served = serve();
    let dir = served._dir.path().to_path_buf();
    let client = connect(&served).await.expect("connect");
    assert_eq!(client.add(1, 2).await.expect("add"), 3);
    assert_eq!(
        entries(&dir),
        [
            ".fifo-probe.client.lock",
            ".fifo-probe.session.lock",
            "fifo-probe.in",
            "fifo-probe.lock",
            "fifo-probe.out",
        ]
    );
    // The client removes its lock when its connection ends.
    drop(client);
    until("the client to remove its lock", || {
        !dir.join(".fifo-probe.client.lock").exists()
    })
    .await;

    served.task.abort();
    let _ = served.task.await;
    assert_eq!(entries(&dir), Vec::<String>::new(), "files left behind");

    // Bound but never served: nothing left either.
    let unused = PairServer::bind(&served.endpoint).expect("bind");
    drop(unused);
    assert_eq!(entries(&dir), Vec::<String>::new());

    // The name is served again at once.
    let again = PairServer::bind(&served.endpoint).expect("bind again");
    let task =
        tokio::spawn(again.serve(ProbeServer::new(ProbeImpl::new()), &ServerConfig::default()));
    let client: ProbeClient = within(
        "connecting again",
        pair::connect(&served.endpoint, &ClientConfig::default()),
    )
    .await
    .expect("connect again");
    assert_eq!(client.add(2, 2).await.expect("add"), 4);
    task.abort();
}

/// A FIFO pair server whose files were removed from under it while a new server took the
/// name removes nothing of the new server's when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_files_were_removed_leaves_the_next_servers_alone() {
    let dir = common::private_dir();
    let endpoint = Endpoint::new("swept").expect("name").in_dir(dir.path());
    let old = PairServer::bind(&endpoint).expect("bind");
    let made = entries(dir.path());
    for file in &made {
        std::fs::remove_file(dir.path().join(file)).expect("remove");
    }
    let new = PairServer::bind(&endpoint).expect("bind over the removed files");
    drop(old);
    assert_eq!(
        entries(dir.path()),
        made,
        "the new server's files are all there"
    );
    let task =
        tokio::spawn(new.serve(ProbeServer::new(ProbeImpl::new()), &ServerConfig::default()));
    let client: ProbeClient = within(
        "connecting to the new server",
        pair::connect(&endpoint, &ClientConfig::default()),
    )
    .await
    .expect("connect");
    assert_eq!(client.add(2, 2).await.expect("add"), 4);
    let third = PairServer::bind(&endpoint);
    assert!(
        matches!(third, Err(BindError::AddrInUse { .. })),
        "the new server still owns the name: {third:?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_of_a_killed_client_is_removed_when_the_server_stops() {
    let served = serve();
    let dir = served._dir.path().to_path_buf();
    // What a client killed while connected leaves: its lock file, unlocked.
    std::fs::write(dir.join(".fifo-probe.client.lock"), b"").expect("write");
    // The next client reuses it.
    let client = connect(&served).await.expect("connect");
    assert_eq!(client.add(1, 2).await.expect("add"), 3);
    drop(client);
    until("the client to remove its lock", || {
        !dir.join(".fifo-probe.client.lock").exists()
    })
    .await;

    // Left again, and no client comes: the server removes it when it stops.
    std::fs::write(dir.join(".fifo-probe.client.lock"), b"").expect("write");
    served.task.abort();
    let _ = served.task.await;
    assert_eq!(entries(&dir), Vec::<String>::new(), "files left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_servers_never_share_a_name() {
    // FIFO servers and socket servers on several threads take and give up one name as fast as
    // they can, so that one often opens the lock file just as the owner removes it. Never may
    // two own it at once, whatever their kind.
    const RACERS: usize = 6;
    const ROUNDS: usize = 1000;
    let dir = common::private_dir();
    let endpoint = Endpoint::new("race").expect("name").in_dir(dir.path());
    let owners = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (results, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let start = Arc::new(std::sync::Barrier::new(RACERS));
    for racer in 0..RACERS {
        let runtime = tokio::runtime::Handle::current();
        let (endpoint, owners, overlaps) =
            (endpoint.clone(), Arc::clone(&owners), Arc::clone(&overlaps));
        let (results, start) = (results.clone(), Arc::clone(&start));
        std::thread::spawn(move || {
            let _runtime = runtime.enter();
            start.wait();
            let mut won = 0usize;
            for _ in 0..ROUNDS {
                let bound: Result<Box<dyn std::any::Any>, BindError> = if racer % 2 == 0 {
                    PairServer::bind(&endpoint)
                        .map(|server| Box::new(server) as Box<dyn std::any::Any>)
                } else {
                    Server::bind_with(
                        &endpoint,
                        ProbeServer::new(ProbeImpl::new()),
                        &ServerConfig::default(),
                    )
                    .map(|server| Box::new(server) as Box<dyn std::any::Any>)
                };
                match bound {
                    Ok(server) => {
                        won += 1;
                        if owners.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::yield_now();
                        owners.fetch_sub(1, Ordering::SeqCst);
                        drop(server);
                    }
                    Err(BindError::AddrInUse { .. }) => {}
                    Err(other) => {
                        let _ = results.send(Err(format!("{other:?}")));
                        return;
                    }
                }
            }
            let _ = results.send(Ok(won));
        });
    }
    drop(results);
    let mut won = 0;
    for _ in 0..RACERS {
        match within("a racing thread to finish", finished.recv()).await {
            Some(Ok(count)) => won += count,
            Some(Err(error)) => panic!("a racing bind failed: {error}"),
            None => panic!("a racing thread panicked"),
        }
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two servers owned the name at once"
    );
    assert!(won > 0, "nobody ever got the name");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

/// Streams both ways, over a FIFO pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_run_over_a_fifo_pair() {
    use futures_util::StreamExt;
    let served = serve();
    let client = connect(&served).await.expect("connect");
    let mut ticks = client.ticks(300).await.expect("open");
    let mut seen = Vec::new();
    while let Some(n) = within("the next tick", ticks.next()).await {
        seen.push(n.expect("a tick"));
    }
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
    // And to the server: more items than one window.
    let sum = within(
        "the sum",
        client.sum(futures_util::stream::iter(0..100_000u32)),
    )
    .await;
    assert_eq!(sum.expect("sum"), (0..100_000u64).sum::<u64>());
}
