//! FIFO pairs whose files are tampered with while the server runs: something else at a FIFO's
//! path fails the connections that need it, and the server serves again once the FIFO is back;
//! a FIFO removed, or the one the server reads replaced, ends the server with an error.
#![cfg(unix)]

mod common;
mod fifo_support;

use std::io::Write;
use std::path::Path;

use common::within;
use fifo_support::{connect, mkfifo, on_thread, serve, until, Served};

/// Puts something at a path.
type Make = fn(&Path);

/// A connection whose FIFO the server cannot open fails alone: the server discards what it
/// wrote and serves the next client. Here something else at the path of `<name>.out`: a
/// symbolic link, which the server does not follow (ELOOP), and a regular file, which opens
/// but is no FIFO; out of descriptors (EMFILE) takes the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_whose_fifo_cannot_be_opened_fails_alone() {
    let served = serve();
    // Swapped in by a rename, so that the path is never missing (the server's FIFO gone).
    let swap = |make: &dyn Fn(&Path)| {
        let temporary = served._dir.path().join("swap");
        make(&temporary);
        std::fs::rename(&temporary, &served.output).expect("rename");
    };
    let others: [(&str, Make); 2] = [
        ("a symbolic link", |path| {
            std::os::unix::fs::symlink("elsewhere", path).expect("symlink");
        }),
        ("a regular file", |path| {
            std::fs::write(path, b"").expect("a regular file");
        }),
    ];
    for (what, other) in others {
        swap(&other);
        let input = served.input.clone();
        let mut to_server = on_thread("the server to open its FIFO", move || {
            std::fs::OpenOptions::new().write(true).open(&input)
        })
        .await
        .expect("open the server's FIFO");
        to_server.write_all(b"hello").expect("write");
        until(
            &format!("the server to drop the connection ({what})"),
            || {
                let mut waiting: libc::c_int = 0;
                // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for that.
                let result = unsafe {
                    libc::ioctl(
                        std::os::fd::AsRawFd::as_raw_fd(&to_server),
                        libc::FIONREAD,
                        &mut waiting,
                    )
                };
                result == 0 && waiting == 0
            },
        )
        .await;
        drop(to_server);
        swap(&mkfifo);
        let client = connect(&served).await.expect("connect");
        assert_eq!(client.add(2, 2).await.expect("add"), 4, "after {what}");
        drop(client);
        assert!(!served.task.is_finished(), "after {what}");
    }
    served.task.abort();
}

/// Waits until the server holds the client-to-server FIFO open: it waits for a client. (The
/// server runs in this process, so its descriptors are this process's.)
#[cfg(target_os = "linux")]
async fn until_the_server_waits(served: &Served) {
    until("the server to open its FIFO", || {
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == served.input))
    })
    .await;
}

/// A FIFO removed while the server waits for a client ends the server with an error, as its
/// documentation says, rather than leaving it waiting on a FIFO no client can find.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_fifo_ends_the_server() {
    for input in [true, false] {
        let served = serve();
        until_the_server_waits(&served).await;
        let fifo = if input { &served.input } else { &served.output };
        std::fs::remove_file(fifo).expect("remove");
        let ended = within("the server to end", served.task)
            .await
            .expect("join");
        let error = ended.expect_err("the server ends with an error");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
    }
}

/// The FIFO the server reads replaced by another (a rename over it) ends the server: clients
/// would write to a FIFO the server never reads.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_input_fifo_ends_the_server() {
    let served = serve();
    until_the_server_waits(&served).await;
    let temporary = served._dir.path().join("swap");
    mkfifo(&temporary);
    std::fs::rename(&temporary, &served.input).expect("rename");
    let ended = within("the server to end", served.task)
        .await
        .expect("join");
    let error = ended.expect_err("the server ends with an error");
    assert!(error.to_string().contains("was replaced"), "{error}");
}
