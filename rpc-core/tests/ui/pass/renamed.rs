//! `#[service(name = "...")]` renames the service in the handshake; the name is part of the
//! fingerprint, and a client of another service is refused at connect.

use rpc_core::{Client, RpcError};

#[rpc_core::service(name = "calc.v1")]
pub trait Calculator {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
}

/// The same methods under the trait's own name.
#[rpc_core::service]
pub trait Calc {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Adder;

impl Calculator for Adder {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), RpcError> {
    assert_eq!(CalculatorClient::SERVICE.name, "calc.v1");
    assert_eq!(CalcClient::SERVICE.name, "Calc");
    assert_ne!(
        CalculatorClient::SERVICE.fingerprint(),
        CalcClient::SERVICE.fingerprint()
    );

    let client: CalculatorClient =
        rpc_core::memory::serve_and_connect(CalculatorServer::new(Adder)).await?;
    assert_eq!(client.add(40, 2).await?, 42);

    let wrong =
        rpc_core::memory::serve_and_connect::<_, CalcClient>(CalculatorServer::new(Adder)).await;
    assert!(matches!(wrong, Err(RpcError::Rejected(_))), "{wrong:?}");
    Ok(())
}
