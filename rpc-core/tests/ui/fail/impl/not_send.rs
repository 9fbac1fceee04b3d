use std::rc::Rc;

#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: String) -> u32;
}

struct Memory;

impl Store for Memory {
    async fn get(&self, key: String) -> u32 {
        let len = Rc::new(key.len() as u32);
        tokio::task::yield_now().await;
        *len
    }
}

fn main() {}
