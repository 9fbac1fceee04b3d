//! The calculator of the docs: a plain method, a typed error and a one-way method, served in
//! memory and called through the generated client.

use std::time::Duration;

use rpc_core::__private::DecodeLimits;
use rpc_core::__private::DispatchError;
use rpc_core::{Client, Dispatch, MethodKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What can go wrong in a division.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum CalcError {
    /// `b` was zero.
    DivideByZero,
}

/// A calculator.
#[rpc_core::service]
pub trait Calculator {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides `a` by `b`.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Writes a line to the server's log.
    #[rpc(oneway)]
    async fn log(&self, line: String);
}

struct Calc {
    log: mpsc::UnboundedSender<String>,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        if b == 0.0 {
            Err(CalcError::DivideByZero)
        } else {
            Ok(a / b)
        }
    }

    async fn log(&self, line: String) {
        let _ = self.log.send(line);
    }
}

fn assert_dispatch<D: Dispatch>(_: &D) {}

fn assert_client<C: Client + std::fmt::Debug>() {}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = CalculatorServer::new(Calc { log: tx });
    assert_dispatch(&server);
    assert_client::<CalculatorClient>();

    let descriptor = server.descriptor();
    assert!(std::ptr::eq(descriptor, CalculatorClient::SERVICE));
    assert_eq!(descriptor.name, "Calculator");
    let methods: Vec<_> = descriptor
        .methods
        .iter()
        .map(|m| (m.name, m.kind))
        .collect();
    assert_eq!(
        methods,
        [
            ("add", MethodKind::Call),
            ("divide", MethodKind::Call),
            ("log", MethodKind::Oneway),
        ]
    );
    // Ids are hashes of the names, found by id.
    for method in descriptor.methods {
        assert!(std::ptr::eq(descriptor.method(method.id).expect("by id"), method));
    }

    let limits = DecodeLimits::default();
    assert!(matches!(
        server.dispatch(3, &[], &limits, None),
        Err(DispatchError::UnknownMethod(3))
    ));
    let add = descriptor.method_named("add").expect("add").id;
    assert!(matches!(
        server.dispatch(add, &[1], &limits, None),
        Err(DispatchError::BadArguments(_))
    ));

    let client: CalculatorClient = rpc_core::memory::serve_and_connect(server.clone()).await?;
    assert_eq!(client.add(2, 3).await?, 5);
    assert_eq!(client.divide(1.0, 4.0).await?, Ok(0.25));
    assert_eq!(client.divide(1.0, 0.0).await?, Err(CalcError::DivideByZero));
    client.log("hello".to_owned()).await?;
    assert_eq!(rx.recv().await.as_deref(), Some("hello"));

    let patient = client.with_timeout(Some(Duration::from_secs(60)));
    assert_eq!(patient.handle().timeout(), Some(Duration::from_secs(60)));
    assert_eq!(patient.clone().add(-1, 1).await?, 0);
    assert!(format!("{client:?}").starts_with("CalculatorClient"));
    assert!(format!("{server:?}").starts_with("CalculatorServer"));
    Ok(())
}
