//! `#[service(crate = "...")]` for a renamed `rpc_core`: generated code names only that path.

extern crate rpc_core as rpc;

mod nested {
    #[rpc::service(crate = "::rpc")]
    pub trait Echo {
        /// Echoes.
        async fn echo(&self, text: String) -> String;
    }
}

#[rpc::service(crate = "rpc", name = "pinger")]
trait Ping {
    async fn ping(&self) -> u32;
}

struct Both;

impl nested::Echo for Both {
    async fn echo(&self, text: String) -> String {
        text
    }
}

impl Ping for Both {
    async fn ping(&self) -> u32 {
        7
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc::RpcError> {
    let echo: nested::EchoClient =
        rpc::memory::serve_and_connect(nested::EchoServer::new(Both)).await?;
    assert_eq!(echo.echo("x".to_owned()).await?, "x");
    let ping: PingClient = rpc::memory::serve_and_connect(PingServer::new(Both)).await?;
    assert_eq!(ping.ping().await?, 7);
    assert_eq!(<PingClient as rpc::Client>::SERVICE.name, "pinger");
    Ok(())
}
