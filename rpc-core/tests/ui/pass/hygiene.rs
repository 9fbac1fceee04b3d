//! The generated code names what it uses by full path: a service in a module that shadows the
//! prelude's names (`Result`, `Option`, `Box`, `Vec`, `String`, `Send`, `Sync`, `Clone`,
//! `Default`, `Future`, `Some`, `Ok`, `drop`), the primitive types' names (`u32`, `str`, ...)
//! and `Arc` and `Pin` with its own compiles and works.

#![allow(dead_code, non_camel_case_types, non_snake_case)]

mod shadowing {
    pub type Result<T> = std::result::Result<T, Failure>;
    pub struct Option;
    pub struct Box;
    pub struct Vec;
    pub struct String;
    pub trait Send {}
    pub trait Sync {}
    pub trait Clone {}
    pub trait Default {}
    pub trait Future {}
    pub struct Arc;
    pub struct Pin;
    pub fn Some() {}
    pub fn Ok() {}
    pub fn drop() {}
    pub struct u8;
    pub struct u32;
    pub struct u64;
    pub struct usize;
    pub struct bool;
    pub struct str;
    use std::primitive::u32 as Int;

    /// Why a call failed.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct Failure(pub Int);

    /// A service among the shadows.
    #[rpc_core::service]
    pub trait Shadowed {
        /// Echoes.
        async fn echo(&self, text: std::string::String) -> std::string::String;
        /// A typed error through the module's `Result`.
        async fn check(&self, n: Int) -> Result<Int>;
        /// A stream.
        async fn count(&self, n: Int) -> rpc_core::Stream<Int>;
        /// One-way.
        #[rpc(oneway)]
        async fn note(&self, n: std::option::Option<Int>);
    }

    pub struct Impl;

    impl Shadowed for Impl {
        async fn echo(&self, text: std::string::String) -> std::string::String {
            text
        }

        async fn check(&self, n: Int) -> Result<Int> {
            if n == 0 {
                std::result::Result::Err(Failure(n))
            } else {
                std::result::Result::Ok(n)
            }
        }

        async fn count(&self, n: Int) -> rpc_core::Stream<Int> {
            rpc_core::Stream::iter(0..n)
        }

        async fn note(&self, _n: std::option::Option<Int>) {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let client: shadowing::ShadowedClient =
        rpc_core::memory::serve_and_connect(shadowing::ShadowedServer::new(shadowing::Impl))
            .await
            .expect("connect");
    assert_eq!(client.echo("hi".to_owned()).await.expect("call"), "hi");
    assert!(matches!(client.check(0).await, Ok(Err(shadowing::Failure(0)))));
    let mut count = client.count(3).await.expect("open");
    let mut items = std::vec::Vec::new();
    while let std::option::Option::Some(item) =
        futures_util::StreamExt::next(&mut count).await
    {
        items.push(item.expect("item"));
    }
    assert_eq!(items, [0, 1, 2]);
    client.note(std::option::Option::Some(1)).await.expect("note");
}
