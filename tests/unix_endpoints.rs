//! Unix endpoints: private directories, socket modes, one live server per name, stale sockets.
#![cfg(unix)]

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{private_dir, within, TestServer};
use rpc_core::{ClientConfig, ServerConfig};
use rpc_transport::unix::EndpointExt;
use rpc_transport::{BindError, ConnectError, Endpoint, Server, UnsafeDirectory};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn socket_and_directory_are_private() {
    let dir = private_dir();
    let endpoints = dir.path().join("endpoints");
    let endpoint = Endpoint::new("perm").expect("name").in_dir(&endpoints);
    let server = TestServer::start_at(endpoint, &ServerConfig::default());
    assert_eq!(mode(&endpoints), 0o700, "directory created 0700");
    assert_eq!(
        mode(std::path::Path::new(&server.address)),
        0o600,
        "socket 0600"
    );
    assert_eq!(mode(&endpoints.join("perm.lock")), 0o600, "lock file 0600");
    server.assert_serving().await;
}

#[tokio::test]
async fn directory_open_to_others_is_refused() {
    let dir = private_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let endpoint = Endpoint::new("open").expect("name").in_dir(dir.path());
    let result = bind(&endpoint);
    assert!(
        matches!(
            result,
            Err(BindError::Endpoint(ConnectError::InsecureDirectory {
                reason: UnsafeDirectory::OpenToOthers,
                ..
            }))
        ),
        "{result:?}"
    );
    let client =
        rpc_transport::connect_with::<common::ProbeClient>(&endpoint, &ClientConfig::default())
            .await;
    assert!(
        matches!(
            client,
            Err(ConnectError::InsecureDirectory {
                reason: UnsafeDirectory::OpenToOthers,
                ..
            })
        ),
        "{client:?}"
    );
}

#[tokio::test]
async fn symlinked_directory_is_refused() {
    let dir = private_dir();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    let link = dir.path().join("link");
    symlink(&real, &link).expect("symlink");
    let endpoint = Endpoint::new("x").expect("name").in_dir(&link);
    let result = bind(&endpoint);
    assert!(
        matches!(
            result,
            Err(BindError::Endpoint(ConnectError::InsecureDirectory {
                reason: UnsafeDirectory::Symlink,
                ..
            }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn second_server_on_a_live_name_is_refused() {
    let server = TestServer::start();
    let second = bind(&server.endpoint);
    assert!(
        matches!(second, Err(BindError::AddrInUse { .. })),
        "{second:?}"
    );
    // The first server was not displaced.
    server.assert_serving().await;
}

#[tokio::test]
async fn stale_socket_is_reclaimed() {
    let dir = private_dir();
    let endpoint = Endpoint::new("stale").expect("name").in_dir(dir.path());
    // A socket left behind by a server that died without cleaning up: bound, then abandoned.
    let path = dir.path().join("stale.sock");
    let abandoned = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    drop(abandoned);
    assert!(path.exists());
    let refused =
        rpc_transport::connect_with::<common::ProbeClient>(&endpoint, &ClientConfig::default())
            .await;
    assert!(
        matches!(refused, Err(ConnectError::NotFound { .. })),
        "{refused:?}"
    );
    let server = TestServer::start_at(endpoint, &ServerConfig::default());
    server.assert_serving().await;
}

/// Temporary sockets a server killed while binding left behind are reclaimed, also one with
/// the very name the next bind picks (a server that is always pid 1 in its container picks
/// the same names after every restart); another name's are left alone.
#[tokio::test]
async fn temporary_sockets_left_by_a_killed_server_are_reclaimed() {
    let dir = private_dir();
    let endpoint = Endpoint::new("temps").expect("name").in_dir(dir.path());
    let pid = std::process::id();
    // This process's next names, whatever its bind counter is at, and another process's.
    let mut left: Vec<_> = (0..256)
        .map(|n| dir.path().join(format!(".temps.{pid}.{n}.tmp")))
        .collect();
    left.push(dir.path().join(".temps.1.0.tmp"));
    for path in &left {
        drop(std::os::unix::net::UnixListener::bind(path).expect("bind"));
    }
    let other = dir.path().join(".temps.x.1.0.tmp");
    drop(std::os::unix::net::UnixListener::bind(&other).expect("bind"));
    let server = TestServer::start_at(endpoint, &ServerConfig::default());
    server.assert_serving().await;
    assert!(
        left.iter().all(|path| !path.exists()),
        "{:?}",
        common::entries(dir.path())
    );
    assert!(other.exists(), "another name's socket is left alone");
}

#[tokio::test]
async fn name_is_free_again_after_the_server_stops() {
    let dir = private_dir();
    let endpoint = Endpoint::new("again").expect("name").in_dir(dir.path());
    let first = TestServer::start_at(endpoint.clone(), &ServerConfig::default());
    first.shutdown.cancel();
    within("the server to stop", first.task)
        .await
        .expect("join")
        .expect("run");
    let second = TestServer::start_at(endpoint, &ServerConfig::default());
    second.assert_serving().await;
}

#[tokio::test]
async fn symlink_at_the_socket_path_is_refused() {
    let dir = private_dir();
    let target = dir.path().join("elsewhere.sock");
    symlink(&target, dir.path().join("sym.sock")).expect("symlink");
    let endpoint = Endpoint::new("sym").expect("name").in_dir(dir.path());
    let result = bind(&endpoint);
    assert!(
        matches!(result, Err(BindError::SymlinkAtPath { .. })),
        "{result:?}"
    );
    assert!(!target.exists(), "the link was followed");
    let client =
        rpc_transport::connect_with::<common::ProbeClient>(&endpoint, &ClientConfig::default())
            .await;
    assert!(
        matches!(
            client,
            Err(ConnectError::InsecureDirectory {
                reason: UnsafeDirectory::EndpointIsSymlink,
                ..
            })
        ),
        "{client:?}"
    );
}

#[tokio::test]
async fn regular_file_at_the_socket_path_is_not_removed() {
    let dir = private_dir();
    let path = dir.path().join("file.sock");
    std::fs::write(&path, b"keep me").expect("write");
    let endpoint = Endpoint::new("file").expect("name").in_dir(dir.path());
    let result = bind(&endpoint);
    assert!(
        matches!(result, Err(BindError::NotASocket { .. })),
        "{result:?}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"keep me");
}

/// A server whose queue of connections waiting to be accepted is full is busy: a client
/// retries until its connect timeout, then is told so, as on Windows when every instance of a
/// pipe is taken (it was an I/O error at once). Linux says so (`EAGAIN`); other systems refuse
/// the connection as if no server listened.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_accept_queue_is_busy_for_the_connect_timeout() {
    use std::os::fd::AsRawFd;
    let dir = private_dir();
    let endpoint = Endpoint::new("queue").expect("name").in_dir(dir.path());
    // A socket at the endpoint's path that never accepts, with no room for a waiting
    // connection once one waits.
    let listener =
        std::os::unix::net::UnixListener::bind(dir.path().join("queue.sock")).expect("bind");
    // SAFETY: listen on a socket this test owns.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut waiting = Vec::new();
    loop {
        let stream = std::os::unix::net::UnixStream::connect(dir.path().join("queue.sock"))
            .expect("connect");
        stream.set_nonblocking(true).expect("nonblocking");
        waiting.push(stream);
        let probe = tokio::net::UnixStream::connect(dir.path().join("queue.sock")).await;
        match probe {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Ok(stream) => waiting.push(stream.into_std().expect("std")),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
        assert!(waiting.len() < 64, "the queue never filled");
    }
    let mut config = ClientConfig::new();
    config.connect_timeout(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let busy = rpc_transport::connect_with::<common::ProbeClient>(&endpoint, &config).await;
    assert!(
        matches!(busy, Err(ConnectError::Busy { .. })),
        "{:?}",
        busy.err()
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "it retried for the connect timeout"
    );
}

#[tokio::test]
async fn missing_server_is_not_found() {
    let dir = private_dir();
    let endpoint = Endpoint::new("nobody").expect("name").in_dir(dir.path());
    let result =
        rpc_transport::connect_with::<common::ProbeClient>(&endpoint, &ClientConfig::default())
            .await;
    assert!(
        matches!(result, Err(ConnectError::NotFound { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn default_directory_is_private_and_per_user() {
    // Uses the real default place: $XDG_RUNTIME_DIR/rpc or <tmp>/rpc-<uid>.
    let name = format!("default-dir-test-{}", std::process::id());
    let server = Server::bind(&name, common::ProbeServer::new(probe())).expect("bind");
    let socket = std::path::PathBuf::from(server.address());
    let dir = socket.parent().expect("parent");
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&socket), 0o600);
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    let client: common::ProbeClient = rpc_transport::connect(&name).await.expect("connect");
    assert_eq!(client.add(1, 2).await.expect("call"), 3);
    shutdown.cancel();
    within("the server to stop", task)
        .await
        .expect("join")
        .expect("run");
    assert!(!socket.exists());
    assert!(!dir.join(format!("{name}.lock")).exists());
}

#[tokio::test]
async fn stopped_server_leaves_nothing_behind() {
    let dir = private_dir();
    let endpoint = Endpoint::new("tidy").expect("name").in_dir(dir.path());
    let server = TestServer::start_at(endpoint.clone(), &ServerConfig::default());
    server.assert_serving().await;
    assert_eq!(common::entries(dir.path()), ["tidy.lock", "tidy.sock"]);
    server.shutdown.cancel();
    within("the server to stop", server.task)
        .await
        .expect("join")
        .expect("run");
    assert_eq!(
        common::entries(dir.path()),
        Vec::<String>::new(),
        "socket or lock file left"
    );

    // A server bound but never run leaves nothing either.
    let unused = bind(&endpoint).expect("bind");
    assert_eq!(common::entries(dir.path()), ["tidy.lock", "tidy.sock"]);
    drop(unused);
    assert_eq!(common::entries(dir.path()), Vec::<String>::new());

    // And the name is served again at once.
    let again = TestServer::start_at(endpoint, &ServerConfig::default());
    again.assert_serving().await;
}

/// A live server whose lock file was removed from under it (an old file of `/tmp` aged out by
/// the system) keeps its name: its socket still takes connections. Before, the next server
/// took the free lock, removed the live socket as stale and served in its place, leaving the
/// first unreachable.
#[tokio::test]
async fn a_live_server_whose_lock_file_was_removed_keeps_its_name() {
    let dir = private_dir();
    let endpoint = Endpoint::new("aged").expect("name").in_dir(dir.path());
    let server = TestServer::start_at(endpoint.clone(), &ServerConfig::default());
    std::fs::remove_file(dir.path().join("aged.lock")).expect("remove the lock file");
    let second = bind(&endpoint);
    assert!(
        matches!(second, Err(BindError::AddrInUse { .. })),
        "{second:?}"
    );
    server.assert_serving().await;
}

/// A server whose socket and lock file were removed from under it (the system cleaned the
/// directory: a user's runtime directory at logout, old files of `/tmp` aged out) while a new
/// server took the name removes nothing of the new server's when it stops: the new one stays
/// reachable and keeps the name.
#[tokio::test]
async fn a_server_whose_files_were_removed_leaves_the_next_servers_alone() {
    let dir = private_dir();
    let endpoint = Endpoint::new("swept").expect("name").in_dir(dir.path());
    let old = bind(&endpoint).expect("bind");
    for file in ["swept.sock", "swept.lock"] {
        std::fs::remove_file(dir.path().join(file)).expect("remove");
    }
    let new = TestServer::start_at(endpoint.clone(), &ServerConfig::default());
    new.assert_serving().await;
    drop(old);
    assert_eq!(common::entries(dir.path()), ["swept.lock", "swept.sock"]);
    new.assert_serving().await;
    let third = bind(&endpoint);
    assert!(
        matches!(third, Err(BindError::AddrInUse { .. })),
        "the new server still owns the name: {third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_servers_never_share_a_name() {
    // Servers on several threads take and give up one name as fast as they can, so that one
    // often opens the lock file just as the owner removes it. Never may two own it at once.
    const RACERS: usize = 6;
    const ROUNDS: usize = 3000;
    let dir = private_dir();
    let endpoint = Endpoint::new("race").expect("name").in_dir(dir.path());
    let owners = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (results, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let start = Arc::new(std::sync::Barrier::new(RACERS));
    for _ in 0..RACERS {
        let runtime = tokio::runtime::Handle::current();
        let (endpoint, owners, overlaps) =
            (endpoint.clone(), Arc::clone(&owners), Arc::clone(&overlaps));
        let (results, start) = (results.clone(), Arc::clone(&start));
        std::thread::spawn(move || {
            let _runtime = runtime.enter();
            start.wait();
            let mut won = 0usize;
            for _ in 0..ROUNDS {
                match bind(&endpoint) {
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
    assert_eq!(common::entries(dir.path()), Vec::<String>::new());
    let last = TestServer::start_at(endpoint, &ServerConfig::default());
    last.assert_serving().await;
}

fn probe() -> common::ProbeImpl {
    common::ProbeImpl::new()
}

/// Binds a probe server on `endpoint` with default options.
fn bind(endpoint: &Endpoint) -> Result<Server<common::ProbeServer<common::ProbeImpl>>, BindError> {
    Server::bind_with(
        endpoint,
        common::ProbeServer::new(probe()),
        &ServerConfig::default(),
    )
}
