//! Stream methods: the client's method opens a receiver, the server returns any stream; a
//! stream argument is any stream on the client and a `Stream` in the handler. A type of the
//! user's named `Stream` in another module is a plain value, also inside another type; a
//! stream argument does not count against the sixteen arguments.

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
    /// The user's own `Stream`s, as plain values.
    async fn frames(&self, first: media::Stream<u8>, rest: Vec<media::Stream<u8>>) -> media::Stream<u8>;
    /// Sixteen arguments and a stream.
    #[allow(clippy::too_many_arguments)]
    async fn wide(
        &self,
        a0: u8, a1: u8, a2: u8, a3: u8, a4: u8, a5: u8, a6: u8, a7: u8,
        a8: u8, a9: u8, a10: u8, a11: u8, a12: u8, a13: u8, a14: u8, a15: u8,
        more: rpc_core::Stream<u8>,
    ) -> u32;
}

mod media {
    /// Frames of a video: no stream of the framework's.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Stream<T>(pub Vec<T>);
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

    async fn frames(&self, first: media::Stream<u8>, rest: Vec<media::Stream<u8>>) -> media::Stream<u8> {
        media::Stream(first.0.into_iter().chain(rest.into_iter().flat_map(|s| s.0)).collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn wide(
        &self,
        a0: u8, a1: u8, a2: u8, a3: u8, a4: u8, a5: u8, a6: u8, a7: u8,
        a8: u8, a9: u8, a10: u8, a11: u8, a12: u8, a13: u8, a14: u8, a15: u8,
        more: rpc_core::Stream<u8>,
    ) -> u32 {
        let values = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15];
        let streamed = more.fold(0u32, |sum, n| async move { sum + u32::from(n) }).await;
        values.iter().map(|&v| u32::from(v)).sum::<u32>() + streamed
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
    let frames = client.frames(media::Stream(vec![1]), vec![media::Stream(vec![2, 3])]).await?;
    assert_eq!(frames, media::Stream(vec![1, 2, 3]));
    let wide = client
        .wide(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, futures_util::stream::iter([4u8]))
        .await?;
    assert_eq!(wide, 20);
    Ok(())
}
