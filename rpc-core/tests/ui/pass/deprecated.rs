//! A deprecated method, or a deprecated service, compiles without a warning from the generated
//! code (here every warning is an error), and the clients' methods are deprecated too.
#![deny(warnings)]

#[rpc_core::service]
pub trait Store {
    /// Reads a value.
    async fn get(&self, key: String) -> u32;
    /// Reads a value the old way.
    #[deprecated(note = "use `get`")]
    async fn fetch(&self, key: String) -> u32;
}

/// A service on its way out.
#[deprecated(note = "use `Store`")]
#[rpc_core::service]
pub trait OldStore {
    /// Reads a value.
    async fn get(&self, key: String) -> u32;
}

struct Memory;

impl Store for Memory {
    async fn get(&self, _key: String) -> u32 {
        1
    }

    #[allow(deprecated)]
    async fn fetch(&self, _key: String) -> u32 {
        2
    }
}

#[allow(deprecated)]
impl OldStore for Memory {
    async fn get(&self, _key: String) -> u32 {
        3
    }
}

fn main() {
    let _store = StoreServer::new(Memory);
    let _old = OldStoreServer::new(Memory);
}
