#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: String) -> u32 {
        key.len() as u32
    }
}

fn main() {}
