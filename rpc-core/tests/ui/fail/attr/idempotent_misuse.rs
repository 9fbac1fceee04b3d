#[rpc_core::service]
pub trait Store {
    #[rpc(oneway, idempotent)]
    async fn put(&self, key: String);
    #[rpc(idempotent)]
    async fn upload(&self, items: rpc_core::Stream<u32>) -> u32;
    #[rpc(idempotent = true)]
    async fn get(&self, key: String) -> u32;
    #[rpc(idempotent, idempotent)]
    async fn len(&self) -> u32;
}

fn main() {}
