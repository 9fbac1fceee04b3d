#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: &str) -> u32;
    async fn put(&self, key: String, value: &[u8]);
    async fn put_all(&self, keys: Vec<&str>, first: Option<&'static String>);
    async fn name(&self) -> &'static str;
    async fn label(&self, text: std::borrow::Cow<'_, str>) -> u32;
    async fn short(&self, text: std::borrow::Cow<str>) -> std::borrow::Cow<[u8]>;
}

// The trait is still there, as written: its impl adds no error of its own.
struct Kept;

impl Store for Kept {
    async fn get(&self, _: &str) -> u32 {
        0
    }
    async fn put(&self, _: String, _: &[u8]) {}
    async fn put_all(&self, _: Vec<&str>, _: Option<&'static String>) {}
    async fn name(&self) -> &'static str {
        ""
    }
    async fn label(&self, _: std::borrow::Cow<'_, str>) -> u32 {
        0
    }
    async fn short(&self, _: std::borrow::Cow<'_, str>) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&[])
    }
}

fn main() {}
