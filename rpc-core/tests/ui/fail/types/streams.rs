#[rpc_core::service]
pub trait Feed {
    // A stream from the client is not supported yet.
    async fn upload(&self, chunks: rpc_core::Stream<u8>) -> u64;
    // A one-way method has no reply to carry a stream.
    #[rpc(oneway)]
    async fn watch(&self) -> rpc_core::Stream<u32>;
}

/// A stream inside a value cannot travel: it is not serializable.
#[rpc_core::service]
pub trait Nested {
    async fn nested(&self) -> Option<rpc_core::Stream<u32>>;
}

fn main() {}
