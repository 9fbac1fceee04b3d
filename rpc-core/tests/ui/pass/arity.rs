//! Zero, one and sixteen arguments; no return type and `-> ()`; `mut` arguments; a raw
//! identifier; and a service without methods.

use std::sync::atomic::{AtomicU32, Ordering};

use rpc_core::__private::DecodeLimits;
use rpc_core::__private::DispatchError;
use rpc_core::{Client, Dispatch};

#[rpc_core::service]
trait Counter {
    async fn get(&self) -> u32;
    async fn bump(&self);
    async fn bump_by(&self, mut by: u32) -> ();
    async fn echo(&self, value: String) -> String;
    #[rpc(oneway)]
    async fn reset(&self) -> ();
    async fn r#type(&self) -> String;
    #[allow(clippy::too_many_arguments)]
    async fn sum(
        &self,
        a0: u8,
        a1: u8,
        a2: u8,
        a3: u8,
        a4: u8,
        a5: u8,
        a6: u8,
        a7: u8,
        a8: u8,
        a9: u8,
        a10: u8,
        a11: u8,
        a12: u8,
        a13: u8,
        a14: u8,
        a15: u8,
    ) -> u32;
}

#[derive(Default)]
struct Count(AtomicU32);

impl Counter for Count {
    async fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    async fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    async fn bump_by(&self, mut by: u32) {
        by = by.saturating_mul(1);
        self.0.fetch_add(by, Ordering::SeqCst);
    }

    async fn echo(&self, value: String) -> String {
        value
    }

    async fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    async fn r#type(&self) -> String {
        "counter".to_owned()
    }

    async fn sum(
        &self,
        a0: u8,
        a1: u8,
        a2: u8,
        a3: u8,
        a4: u8,
        a5: u8,
        a6: u8,
        a7: u8,
        a8: u8,
        a9: u8,
        a10: u8,
        a11: u8,
        a12: u8,
        a13: u8,
        a14: u8,
        a15: u8,
    ) -> u32 {
        [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
        ]
        .iter()
        .map(|&a| u32::from(a))
        .sum()
    }
}

#[rpc_core::service]
trait Nothing {}

struct Nobody;

impl Nothing for Nobody {}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let names: Vec<_> = CounterClient::SERVICE
        .methods
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        ["get", "bump", "bump_by", "echo", "reset", "type", "sum"]
    );

    let client: CounterClient =
        rpc_core::memory::serve_and_connect(CounterServer::new(Count::default())).await?;
    assert_eq!(client.get().await?, 0);
    client.bump().await?;
    let () = client.bump_by(2).await?;
    assert_eq!(client.get().await?, 3);
    assert_eq!(client.echo("hi".to_owned()).await?, "hi");
    assert_eq!(client.r#type().await?, "counter");
    assert_eq!(
        client
            .sum(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
            .await?,
        136
    );
    client.reset().await?;

    let server = NothingServer::new(Nobody);
    assert!(server.descriptor().methods.is_empty());
    assert!(matches!(
        server.dispatch(0, &[], &DecodeLimits::default(), None),
        Err(DispatchError::UnknownMethod(0))
    ));
    let _nothing: NothingClient = rpc_core::memory::serve_and_connect(server).await?;
    Ok(())
}
