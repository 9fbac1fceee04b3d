#[rpc_core::service]
pub trait Store {
    async fn put(&self, key: impl Into<String>);
    async fn keys(&self) -> impl Iterator<Item = String>;
    async fn values(&self) -> Vec<impl serde::Serialize>;
}

fn main() {}
