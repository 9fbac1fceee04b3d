//! Calling a deprecated method through the generated clients is a use of something deprecated.
#![deny(deprecated)]

#[rpc_core::service]
pub trait Store {
    /// Reads a value the old way.
    #[deprecated(note = "use `get`")]
    async fn fetch(&self, key: String) -> u32;
}

async fn read(store: &StoreClient) {
    let _ = store.fetch("key".to_owned()).await;
}

fn read_blocking(store: &StoreBlockingClient) {
    let _ = store.fetch("key".to_owned());
}

fn main() {
    let _ = read;
    let _ = read_blocking;
}
