#[rpc_core::service]
pub trait Store {
    async fn merge(&self, other: Self) -> u32;
    async fn snapshot(&self) -> Box<Self>;
    async fn key(&self, key: <Self as Keyed>::Key) -> u32;
    async fn inferred(&self, key: _) -> u32;
}

pub trait Keyed {
    type Key;
}

fn main() {}
