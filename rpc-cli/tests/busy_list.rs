//! `rpc list` lists a service at its limit of connections, saying it is busy, instead of
//! leaving it out as it leaves out a socket with no server behind it.

use rpc_cli::remote::{Remote, BUSY};
use rpc_cli::run::{Backend, ServiceEntry};

/// The service.
#[rpc_core::service]
pub trait Counter {
    /// The count.
    async fn count(&self) -> u64;
}

struct Zero;

impl Counter for Zero {
    async fn count(&self) -> u64 {
        0
    }
}

/// Whether this Windows test runs under Wine (which cannot list `\\.\pipe\`).
fn under_wine() -> bool {
    cfg!(windows) && std::path::Path::new(r"C:\windows\system32\winecfg.exe").exists()
}

#[test]
fn a_busy_service_is_listed_as_busy() {
    let dir = tempfile::tempdir().expect("temp dir");
    // This test is alone in its process: nothing else reads the environment meanwhile.
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    let name = format!("counter-{}", std::process::id());
    let endpoint = rpc_transport::Endpoint::new(&name).expect("name");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime
        .block_on(async {
            rpc_transport::Server::bind_with(
                &endpoint,
                CounterServer::new(Zero),
                rpc_core::ServerConfig::new().max_connections(1),
            )
        })
        .expect("bind");
    runtime.spawn(server.run());
    // The one connection the server takes.
    let held: CounterClient = runtime
        .block_on(rpc_transport::connect_with(
            &endpoint,
            &rpc_core::ClientConfig::default(),
        ))
        .expect("connect");
    assert_eq!(runtime.block_on(held.count()).expect("count"), 0);

    let listed = Remote::new().expect("backend").list();
    let listed = match listed {
        Err(error) if under_wine() => {
            println!("NOT CONFIRMED: Wine cannot enumerate \\\\.\\pipe\\ ({error})");
            return;
        }
        listed => listed.expect("list"),
    };
    assert!(
        listed.contains(&ServiceEntry {
            name: name.clone(),
            interface: BUSY.to_owned(),
        }),
        "{listed:?}"
    );
    drop(held);
}
