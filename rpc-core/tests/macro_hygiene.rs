//! Generated code names everything by absolute path: a service declared in a crate without the
//! prelude, in a module that shadows the names generated code uses (`Result`, `Box`, `Arc`,
//! `Send`, `core`, `rpc_core`, ...), compiles and works.

#![no_implicit_prelude]

mod api {
    #![allow(dead_code, non_camel_case_types, non_upper_case_globals, clippy::all)]

    // Items that generated code would pick up if it used relative or prelude paths.
    pub(crate) struct Result;
    pub(crate) struct Option;
    pub(crate) struct Ok;
    pub(crate) struct Err;
    pub(crate) struct Some;
    pub(crate) struct None;
    pub(crate) struct Box;
    pub(crate) struct Arc;
    pub(crate) struct Vec;
    pub(crate) struct String;
    pub(crate) struct Send;
    pub(crate) struct Sync;
    pub(crate) struct Sized;
    pub(crate) struct Future;
    pub(crate) struct Clone;
    pub(crate) struct Debug;
    pub(crate) struct Duration;
    pub(crate) struct Client;
    pub(crate) struct ClientHandle;
    pub(crate) struct Dispatch;
    pub(crate) struct DispatchError;
    pub(crate) struct Outcome;
    pub(crate) struct ServiceDescriptor;
    pub(crate) struct MethodDescriptor;
    pub(crate) struct RpcError;
    pub(crate) struct __RPC_METHODS;
    pub(crate) mod core {}
    pub(crate) mod std {}
    pub(crate) mod serde {}
    pub(crate) mod rpc_core {}
    pub(crate) mod __private {}
    pub(crate) fn decode_args() {}
    // Constants named like the locals a naive expansion would use (a parameter pattern would
    // match them). The public `with_timeout(timeout)` and `new(service)` keep readable names.
    pub(crate) const f: u8 = 0;
    pub(crate) const handle: u8 = 0;
    pub(crate) const method: u8 = 0;
    pub(crate) const args: u8 = 0;
    pub(crate) const limits: u8 = 0;
    pub(crate) const args_shape: u8 = 0;
    pub(crate) const stream_arg: u8 = 0;
    pub(crate) const result_shape: u8 = 0;
    pub(crate) const error: u8 = 0;

    /// A user type named like the server's type parameter.
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::core::fmt::Debug, ::core::cmp::PartialEq,
    )]
    pub(crate) struct S(pub(crate) u8);

    /// A typed error.
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::core::fmt::Debug, ::core::cmp::PartialEq,
    )]
    pub(crate) struct Failure(pub(crate) ::std::string::String);

    /// A service declared without the prelude.
    #[::rpc_core::service(name = "hygiene.v1")]
    pub(crate) trait Hygiene {
        /// Returns its argument.
        async fn echo(&self, s: S) -> S;
        /// Fails when asked to.
        async fn fallible(&self, ok: bool) -> ::core::result::Result<u8, Failure>;
        /// Does nothing.
        async fn nothing(&self);
        /// Takes note, one way.
        #[rpc(oneway)]
        async fn note(&self, text: ::std::string::String);
    }
}

struct Impl;

impl api::Hygiene for Impl {
    async fn echo(&self, s: api::S) -> api::S {
        s
    }

    async fn fallible(&self, ok: bool) -> ::core::result::Result<u8, api::Failure> {
        if ok {
            ::core::result::Result::Ok(1)
        } else {
            ::core::result::Result::Err(api::Failure(::std::string::ToString::to_string("no")))
        }
    }

    async fn nothing(&self) {}

    async fn note(&self, _text: ::std::string::String) {}
}

fn assert_dispatch<D: ::rpc_core::Dispatch>(
    dispatch: &D,
) -> &'static ::rpc_core::ServiceDescriptor {
    dispatch.descriptor()
}

#[::core::prelude::v1::test]
fn service_without_prelude() {
    let server = api::HygieneServer::new(Impl);
    let descriptor = assert_dispatch(&server);
    let service = <api::HygieneClient as ::rpc_core::Client>::SERVICE;
    ::std::assert!(::core::ptr::eq(descriptor, service));
    ::std::assert_eq!(service.name, "hygiene.v1");
    ::std::assert_eq!(service.methods.len(), 4);
    let expected = [
        ("echo", ::rpc_core::MethodKind::Call),
        ("fallible", ::rpc_core::MethodKind::Call),
        ("nothing", ::rpc_core::MethodKind::Call),
        ("note", ::rpc_core::MethodKind::Oneway),
    ];
    let methods = ::core::iter::Iterator::zip(service.methods.iter(), expected);
    for (method, (name, kind)) in methods {
        ::std::assert!(service
            .method(method.id)
            .is_some_and(|found| ::core::ptr::eq(found, method)));
        ::std::assert_eq!(method.name, name);
        ::std::assert_eq!(method.kind, kind);
    }

    let runtime = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client: api::HygieneClient =
            ::rpc_core::memory::serve_and_connect(::core::clone::Clone::clone(&server))
                .await
                .expect("connect");
        let client = client.with_timeout(::core::option::Option::Some(
            ::core::time::Duration::from_secs(30),
        ));
        ::std::assert_eq!(client.echo(api::S(7)).await.expect("echo"), api::S(7));
        ::std::assert_eq!(
            client.fallible(true).await.expect("call"),
            ::core::result::Result::Ok(1)
        );
        ::std::assert!(client.fallible(false).await.expect("call").is_err());
        client.nothing().await.expect("nothing");
        client
            .note(::std::string::ToString::to_string("n"))
            .await
            .expect("note");
    });
}
