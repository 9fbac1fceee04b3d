//! Stream methods: the client's method opens a receiver, the server returns any stream; a
//! stream argument is any stream on the client and a `Stream` in the handler.

use futures_util::StreamExt;

#[rpc_core::service]
pub trait Ticker {
    /// Ticks from `from`.
    async fn ticks(&self, from: u32) -> rpc_core::Stream<u32>;
    /// Typed errors item by item.
    async fn checked(&self) -> rpc_core::Stream<Result<u32, String>>;
    /// Sums a stream from the client, with a plain argument before it.
    async fn sum(&self, start: u64, numbers: rpc_core::Stream<u32>) -> Result<u64, String>;
    /// Both ways, the stream argument first.
    async fn double(&self, numbers: rpc_core::Stream<u32>, by: u32) -> rpc_core::Stream<u32>;
}

struct Ticks;

impl Ticker for Ticks {
    async fn ticks(&self, from: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::iter(from..from + 3)
    }

    async fn checked(&self) -> rpc_core::Stream<Result<u32, String>> {
        rpc_core::Stream::iter([Ok(1), Err("no".to_owned())])
    }

    async fn sum(&self, start: u64, numbers: rpc_core::Stream<u32>) -> Result<u64, String> {
        Ok(numbers.fold(start, |sum, n| async move { sum + u64::from(n) }).await)
    }

    async fn double(&self, numbers: rpc_core::Stream<u32>, by: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::new(numbers.map(move |n| n * by))
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
    let sum = client.sum(10, futures_util::stream::iter(1..=4u32)).await?;
    assert_eq!(sum, Ok(20));
    let (sender, numbers) = rpc_core::Stream::channel(4);
    let mut doubled = client.double(numbers, 2).await?;
    sender.send(21).await.map_err(|_| rpc_core::RpcError::ConnectionClosed)?;
    assert_eq!(doubled.next().await.transpose()?, Some(42));
    drop(sender);
    assert!(doubled.next().await.is_none());
    Ok(())
}
