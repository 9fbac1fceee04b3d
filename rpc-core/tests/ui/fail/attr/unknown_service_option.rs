#[rpc_core::service(name = "store.v1", version = 2, retries)]
pub trait Store {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service(name = 5)]
pub trait Cache {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service(name = "a", name = "b")]
pub trait Twice {
    async fn get(&self, key: String) -> u32;
}

fn main() {}
