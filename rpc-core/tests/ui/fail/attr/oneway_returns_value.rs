#[rpc_core::service]
pub trait Store {
    #[rpc(oneway)]
    async fn put(&self, key: String) -> bool;
    #[rpc(oneway)]
    async fn try_put(&self, key: String) -> Result<(), String>;
    #[rpc(oneway)]
    async fn fine(&self, key: String) -> ();
}

fn main() {}
