#[rpc_core::service]
pub trait Store {
    #[rpc(oneway, retry = 3)]
    async fn put(&self, key: String);
    #[rpc(idempotent)]
    async fn get(&self, key: String) -> u32;
    #[rpc]
    async fn clear(&self);
    #[rpc(oneway = true)]
    async fn flush(&self);
    #[rpc(oneway, oneway)]
    async fn sync(&self);
}

fn main() {}
