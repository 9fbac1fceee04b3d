//! A named pair of one-way pipes, one client at a time: for programs that can only open files
//! by name, or that want two one-way pipes rather than a duplex connection.
//!
//! * **Unix**: two FIFOs in the endpoint's private directory, `<name>.in` (client to server)
//!   and `<name>.out` (server to client), both mode 0600, opened without blocking so that no
//!   opening order hangs; lock files decide who serves the name and which client is connected.
//! * **Windows**: two named pipes, `\\.\pipe\rpc-<name>.in` (inbound) and
//!   `\\.\pipe\rpc-<name>.out` (outbound), one instance each, with the security descriptor
//!   of the duplex pipes; the client checks their owner as it does a duplex pipe's.
//!
//! The same API on both: [`PairServer::bind`] (or [`PairServer::bind_with`]),
//! [`PairServer::paths`], [`PairServer::serve`], and [`connect`]. A second client waits while
//! one is connected and gets [`ConnectError::Busy`](crate::ConnectError::Busy) after
//! [`ClientConfig::connect_timeout`](rpc_core::ClientConfig::connect_timeout); with no server,
//! [`ConnectError::NotFound`](crate::ConnectError::NotFound) comes at once.
//!
//! The handlers' peer: on Windows the client's process id and user, as for a duplex pipe; on
//! Unix unknown (a FIFO does not say who opened it; only this user can open the private
//! directory's FIFOs).
//! ```no_run
//! # #[rpc_core::service]
//! # pub trait Calculator { async fn add(&self, a: i64, b: i64) -> i64; }
//! # #[derive(Clone)] struct Calc;
//! # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_transport::{pair, Endpoint};
//!
//! let endpoint = Endpoint::new("calculator")?;
//! // Server:
//! let server = pair::PairServer::bind(&endpoint)?;
//! tokio::spawn(server.serve(CalculatorServer::new(Calc), &Default::default()));
//! // Client:
//! let calc: CalculatorClient = pair::connect(&endpoint, &rpc_core::ClientConfig::default()).await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! # Ok(()) }
//! ```

pub use crate::sys::pair::{connect, PairServer};
