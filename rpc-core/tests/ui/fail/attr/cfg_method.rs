#[rpc_core::service]
pub trait Store {
    #[cfg(feature = "debug")]
    async fn dump(&self) -> String;
    #[cfg_attr(test, allow(unused))]
    async fn get(&self, key: String) -> u32;
}

fn main() {}
