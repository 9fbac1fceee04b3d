//! `#[rpc(idempotent)]` on calls and streams: the descriptor says so, and nothing else changes.

#[rpc_core::service]
pub trait Store {
    /// Reads a value.
    #[rpc(idempotent)]
    async fn get(&self, key: String) -> u32;
    /// Writes a value.
    async fn put(&self, key: String, value: u32);
    /// Watches a value.
    #[rpc(idempotent)]
    async fn watch(&self, key: String) -> rpc_core::Stream<u32>;
}

fn main() {
    let methods = <StoreClient as rpc_core::Client>::SERVICE.methods;
    let idempotent: Vec<(&str, bool)> = methods.iter().map(|m| (m.name, m.idempotent)).collect();
    assert_eq!(idempotent, [("get", true), ("put", false), ("watch", true)]);
}
