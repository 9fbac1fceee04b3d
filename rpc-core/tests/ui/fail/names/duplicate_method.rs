#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: String) -> u32;
    async fn put(&self, key: String);
    async fn get(&self, key: u64) -> u32;
    async fn r#put(&self, key: u64);
}

fn main() {}
