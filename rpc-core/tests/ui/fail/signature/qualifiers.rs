#[rpc_core::service]
pub trait Store {
    async unsafe fn get(&self, key: String) -> u32;
    async extern "C" fn put(&self, key: String);
    const async fn clear(&self);
}

fn main() {}
