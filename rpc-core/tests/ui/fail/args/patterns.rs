#[rpc_core::service]
pub trait Store {
    async fn put(&self, (key, value): (String, u32));
    async fn get(&self, _: String) -> u32;
    async fn take(&self, ref key: String) -> u32;
    async fn hold(&self, #[allow(unused)] key: String) -> u32;
    async fn twice(&self, key: String, key: String) -> u32;
}

fn main() {}
