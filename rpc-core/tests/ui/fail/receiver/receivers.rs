#[rpc_core::service]
pub trait Store {
    async fn new(key: String) -> u32;
    async fn take(self) -> u32;
    async fn take_mut(mut self) -> u32;
    async fn put(&mut self, key: String);
    async fn boxed(self: Box<Self>) -> u32;
    async fn typed(self: &Self) -> u32;
    async fn forever(&'static self) -> u32;
    async fn fine(&self) -> u32;
}

fn main() {}
