#[rpc_core::service]
pub trait Store {
    fn get(&self, key: String) -> u32;
    fn put(&self, key: String) -> impl std::future::Future<Output = ()> + Send;
}

fn main() {}
