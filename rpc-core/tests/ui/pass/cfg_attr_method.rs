//! `#[cfg_attr]` on a method, adding attributes that change neither its id nor its options, is
//! kept on the trait's method (here every warning is an error, and the lint it allows fires).
#![deny(warnings)]

#[rpc_core::service]
pub trait Store {
    /// Reads a value.
    #[cfg_attr(all(), allow(non_snake_case))]
    async fn Get(&self, key: String) -> u32;
}

struct Memory;

impl Store for Memory {
    #[allow(non_snake_case)]
    async fn Get(&self, _key: String) -> u32 {
        1
    }
}

fn main() {
    let _store = StoreServer::new(Memory);
}
