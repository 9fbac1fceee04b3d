#[rpc_core::service]
pub trait Feed {
    // Two streams from the client: merge them into one.
    async fn upload(&self, chunks: rpc_core::Stream<u8>, more: rpc_core::Stream<u8>) -> u64;
    // A one-way method has no reply to carry a stream, nor credit for one.
    #[rpc(oneway)]
    async fn watch(&self) -> rpc_core::Stream<u32>;
    #[rpc(oneway)]
    async fn push(&self, items: rpc_core::Stream<u32>);
}

/// A stream inside a value cannot travel: only an argument or the result is a stream.
#[rpc_core::service]
pub trait Nested {
    async fn nested(&self) -> Option<rpc_core::Stream<u32>>;
    async fn inside(&self, batches: Vec<rpc_core::Stream<u8>>);
}

fn main() {}
