#[rpc_core::service]
pub trait Store {
    #[cfg(feature = "debug")]
    async fn dump(&self) -> String;
    #[cfg_attr(test, rpc(id = 7))]
    async fn get(&self, key: String) -> u32;
    #[cfg_attr(test, doc = "Counts.", cfg(test))]
    async fn count(&self) -> u32;
    /// Attributes that change neither ids nor options are accepted.
    #[cfg_attr(test, allow(unused))]
    #[cfg_attr(all(), doc = "Lists the keys.")]
    async fn keys(&self) -> Vec<String>;
}

fn main() {}
