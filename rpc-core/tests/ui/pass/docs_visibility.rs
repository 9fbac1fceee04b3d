//! The trait keeps its docs, attributes and visibility; the client and server get the trait's
//! visibility and docs of their own, so a crate that denies `missing_docs`, `unreachable_pub`
//! and every warning still builds.

#![deny(missing_docs, unreachable_pub, warnings)]

mod api {
    use serde::{Deserialize, Serialize};

    /// A greeting.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Greeting {
        pub(crate) text: String,
    }

    /// Greets people.
    ///
    /// Its client is `GreeterClient`.
    #[rpc_core::service]
    #[must_use = "traits are not values, but the attribute must survive"]
    pub(crate) trait Greeter {
        /// Says hello to `name`.
        async fn hello(&self, name: String) -> Greeting;

        /// Says nothing, one way.
        #[rpc(oneway)]
        #[doc(alias = "quiet")]
        async fn hush(&self);
    }

    /// Without docs on the methods: the client documents them itself.
    #[rpc_core::service]
    pub(super) trait Terse {
        #[allow(missing_docs)]
        async fn ping(&self) -> u8;
    }
}

use api::{Greeter, Greeting};

struct English;

impl Greeter for English {
    async fn hello(&self, name: String) -> Greeting {
        Greeting {
            text: format!("Hello, {name}!"),
        }
    }

    async fn hush(&self) {}
}

struct Pong;

impl api::Terse for Pong {
    async fn ping(&self) -> u8 {
        1
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let client: api::GreeterClient =
        rpc_core::memory::serve_and_connect(api::GreeterServer::new(English)).await?;
    assert_eq!(client.hello("Ada".to_owned()).await?.text, "Hello, Ada!");
    client.hush().await?;
    let terse: api::TerseClient =
        rpc_core::memory::serve_and_connect(api::TerseServer::new(Pong)).await?;
    assert_eq!(terse.ping().await?, 1);
    Ok(())
}
