//! A stream method: the client's method opens a receiver, the server returns any stream.

use futures_util::StreamExt;

#[rpc_core::service]
pub trait Ticker {
    /// Ticks from `from`.
    async fn ticks(&self, from: u32) -> rpc_core::Stream<u32>;
    /// Typed errors item by item.
    async fn checked(&self) -> rpc_core::Stream<Result<u32, String>>;
}

struct Ticks;

impl Ticker for Ticks {
    async fn ticks(&self, from: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::iter(from..from + 3)
    }

    async fn checked(&self) -> rpc_core::Stream<Result<u32, String>> {
        rpc_core::Stream::iter([Ok(1), Err("no".to_owned())])
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let client: TickerClient = rpc_core::memory::serve_and_connect(TickerServer::new(Ticks)).await?;
    let mut ticks: rpc_core::StreamReceiver<u32> = client.ticks(7).await?;
    let mut seen = Vec::new();
    while let Some(tick) = ticks.next().await {
        seen.push(tick?);
    }
    assert_eq!(seen, [7, 8, 9]);
    let checked: Vec<_> = client.checked().await?.collect().await;
    assert_eq!(checked.len(), 2);
    Ok(())
}
