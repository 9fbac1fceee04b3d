#[rpc_core::service]
pub trait Store {
    type Key;
    #[rpc(id = 1)]
    const LIMIT: usize;
    async fn get(&self, key: String) -> u32;
    some_macro!();
}

fn main() {}
