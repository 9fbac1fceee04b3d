#[rpc_core::service]
pub trait Store {
    async fn with_timeout(&self, seconds: u64);
    async fn handle(&self) -> u32;
    async fn from_handle(&self) -> u32;
    async fn clone(&self) -> u32;
    async fn fmt(&self) -> String;
    async fn new(&self) -> u32;
    async fn as_async(&self) -> u32;
    async fn from_async(&self);
}

fn main() {}
