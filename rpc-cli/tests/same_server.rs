//! A call made after `describe` goes to the server that described itself. When another server
//! has taken the name since, with another interface, the call fails as a lost connection
//! instead of reaching it with arguments encoded for the first one's schema (which the other
//! may decode as something else without a word).

use rpc_cli::remote::Remote;
use rpc_cli::run::{Backend, Reply};
use rpc_cli::CliError;

/// The first server's interface.
#[rpc_core::service(name = "Store")]
pub trait Before {
    /// Stores a value; answers it.
    async fn set(&self, value: u32) -> u32;
}

/// The interface of the server that takes the name next: the same method, another type.
#[rpc_core::service(name = "Store")]
pub trait After {
    /// Stores ten times a value; answers it.
    async fn set(&self, value: i64) -> i64;
}

struct First;

impl Before for First {
    async fn set(&self, value: u32) -> u32 {
        value
    }
}

struct Second;

impl After for Second {
    async fn set(&self, value: i64) -> i64 {
        value * 10
    }
}

#[test]
fn a_call_after_describe_reaches_the_server_that_described_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    // This test is alone in its process: nothing else reads the environment meanwhile.
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    let name = format!("store-{}", std::process::id());
    let endpoint = rpc_transport::Endpoint::new(&name).expect("name");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let first = runtime
        .block_on(async {
            rpc_transport::Server::bind_with(
                &endpoint,
                BeforeServer::new(First),
                &rpc_core::ServerConfig::default(),
            )
        })
        .expect("bind the first server");
    let stop_first = first.shutdown_handle();
    let first = runtime.spawn(first.run());

    let mut remote = Remote::new().expect("backend");
    let described = remote.describe(&name).expect("describe");
    let set = described
        .methods
        .iter()
        .find(|method| method.name == "set")
        .expect("set")
        .clone();
    let args = postcard::to_stdvec(&(5u32,)).expect("encode");
    assert_eq!(
        remote.call(&name, &set, args.clone(), None).expect("call"),
        Reply::Ok(postcard::to_stdvec(&5u32).expect("encode"))
    );

    // The first server goes, and another with the other interface takes its name.
    stop_first.cancel();
    runtime
        .block_on(first)
        .expect("join")
        .expect("the first server ends");
    let second = runtime
        .block_on(async {
            rpc_transport::Server::bind_with(
                &endpoint,
                AfterServer::new(Second),
                &rpc_core::ServerConfig::default(),
            )
        })
        .expect("bind the second server");
    runtime.spawn(second.run());

    let result = remote.call(&name, &set, args, None);
    assert!(
        matches!(result, Err(CliError::Connection { .. })),
        "{result:?}"
    );
}
