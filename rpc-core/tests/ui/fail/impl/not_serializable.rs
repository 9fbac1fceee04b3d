pub struct Opaque;

#[rpc_core::service]
pub trait Store {
    async fn put(&self, value: Opaque);
    async fn get(&self) -> Opaque;
}

fn main() {}
