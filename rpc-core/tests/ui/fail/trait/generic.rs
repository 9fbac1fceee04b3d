#[rpc_core::service]
pub trait Store<T> {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service]
pub trait Cache<'a, const N: usize> {
    async fn get(&self, key: String) -> u32;
}

fn main() {}
