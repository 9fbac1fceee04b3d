//! Types handed to a service trait through a `macro_rules!` `$t:ty` (which wraps them in an
//! invisible group) mean what they mean written out: a `Result<T, E>` result is a typed error,
//! a `Stream<T>` argument or result is a stream.

/// A service whose result and stream types come from the macro's caller.
macro_rules! service_of {
    ($result:ty, $upload:ty, $items:ty) => {
        /// A service made by a macro.
        #[rpc_core::service]
        pub trait Generated {
            /// A typed error, from `$result`.
            async fn fallible(&self) -> $result;
            /// A stream from the client, from `$upload`.
            async fn upload(&self, items: $upload) -> u32;
            /// A stream of results, from `$items`.
            async fn watch(&self) -> $items;
        }
    };
}

service_of!(
    Result<u8, String>,
    rpc_core::Stream<u32>,
    rpc_core::Stream<u64>
);

#[test]
fn types_through_a_macro_keep_their_meaning() {
    let schema = <GeneratedClient as rpc_core::Client>::SERVICE.schema();
    let method = |name: &str| {
        schema
            .methods
            .iter()
            .find(|method| method.name == name)
            .unwrap_or_else(|| panic!("method {name}"))
    };
    assert!(
        method("fallible").error.is_some(),
        "a typed error: {:?}",
        method("fallible")
    );
    assert!(
        method("upload").stream_arg.is_some(),
        "a stream argument: {:?}",
        method("upload")
    );
    assert_eq!(method("watch").kind, "stream");
}
