//! An argument type whose own decoding code panics (a `TryFrom` of a user's type, run by serde
//! while the server decodes the call) fails that one call with `HandlerPanicked`, as a panic of
//! the handler does; the connection and its other calls go on.

mod common;

use common::within;
use rpc_core::protocol::WireError;
use rpc_core::{ClientConfig, RpcError, ServerConfig};
use rpc_transport::pipes::{connect_pipes, serve_pipes};
use serde::{Deserialize, Serialize};

/// The number no [`Touchy`] may hold.
const CURSED: u32 = 7777;

/// A number whose conversion from the wire panics on [`CURSED`], as a buggy type might.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Touchy(u32);

impl TryFrom<u32> for Touchy {
    type Error = &'static str;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        assert_ne!(n, CURSED, "a cursed number");
        if n == u32::MAX {
            return Err("too large");
        }
        Ok(Touchy(n))
    }
}

impl From<Touchy> for u32 {
    fn from(touchy: Touchy) -> u32 {
        touchy.0
    }
}

/// Takes touchy numbers.
#[rpc_core::service]
pub trait Numbers {
    /// The number.
    async fn take(&self, n: Touchy) -> u32;
    /// Takes a number and answers nothing.
    #[rpc(oneway)]
    async fn drop_off(&self, n: Touchy);
}

struct NumbersImpl;

impl Numbers for NumbersImpl {
    async fn take(&self, n: Touchy) -> u32 {
        n.0
    }

    async fn drop_off(&self, _n: Touchy) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_decoding_arguments_fails_only_that_call() {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let server = tokio::spawn(serve_pipes(
        server_read,
        server_write,
        NumbersServer::new(NumbersImpl),
        &ServerConfig::default(),
    ));
    let (client_read, client_write) = tokio::io::split(client_end);
    let client: NumbersClient = within(
        "the handshake",
        connect_pipes(client_read, client_write, &ClientConfig::default()),
    )
    .await
    .expect("connect");

    let cursed = within("the cursed call", client.take(Touchy(CURSED))).await;
    assert!(
        matches!(cursed, Err(RpcError::Remote(WireError::HandlerPanicked))),
        "{cursed:?}"
    );
    within("a one-way call", client.drop_off(Touchy(CURSED)))
        .await
        .expect("sent");
    assert_eq!(
        within("a call after them", client.take(Touchy(3)))
            .await
            .expect("the connection goes on"),
        3
    );
    assert!(!server.is_finished(), "the connection is still served");
}
