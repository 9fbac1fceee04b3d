#[rpc_core::service]
pub unsafe trait Store {
    async fn get(&self, key: String) -> u32;
}

fn main() {}
