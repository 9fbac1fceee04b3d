#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: &str) -> u32;
    async fn put(&self, key: String, value: &[u8]);
    async fn put_all(&self, keys: Vec<&str>, first: Option<&'static String>);
    async fn name(&self) -> &'static str;
    async fn label(&self, text: std::borrow::Cow<'_, str>) -> u32;
}

fn main() {}
