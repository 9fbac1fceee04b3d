#[rpc_core::service]
pub trait Store {
    async fn get<K: serde::Serialize>(&self, key: K) -> u32;
    async fn first<const N: usize>(&self, keys: [String; N]) -> u32;
    async fn name<'a>(&self) -> String;
    async fn count(&self) -> u32
    where
        Self: Sized;
}

fn main() {}
