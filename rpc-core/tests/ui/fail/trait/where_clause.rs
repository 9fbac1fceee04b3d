#[rpc_core::service]
pub trait Store
where
    Self: Sized,
{
    async fn get(&self, key: String) -> u32;
}

fn main() {}
