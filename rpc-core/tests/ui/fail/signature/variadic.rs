#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: String, rest: ...) -> u32;
}

fn main() {}
