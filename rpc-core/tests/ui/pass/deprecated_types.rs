//! A deprecated type in a method's signature, allowed on the trait or on the method, warns
//! nowhere in the generated code either (here every warning is an error).
#![deny(warnings)]

/// The old form of a key.
#[deprecated(note = "use `String`")]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct OldKey(pub String);

#[allow(deprecated)]
#[rpc_core::service]
pub trait Store {
    /// Reads a value by its old key.
    async fn get(&self, key: OldKey) -> u32;
}

struct Memory;

#[allow(deprecated)]
impl Store for Memory {
    async fn get(&self, _key: OldKey) -> u32 {
        1
    }
}

fn main() {
    let _store = StoreServer::new(Memory);
    let _index = IndexServer::new(Memory);
}

/// The same allowed on the method only.
#[rpc_core::service]
pub trait Index {
    /// Finds a value by its old key.
    #[allow(deprecated)]
    async fn find(&self, key: OldKey) -> u32;
    /// Counts, under a condition that holds.
    #[cfg_attr(all(), allow(deprecated))]
    async fn count(&self, key: OldKey) -> u32;
}

#[allow(deprecated)]
impl Index for Memory {
    async fn find(&self, _key: OldKey) -> u32 {
        2
    }

    async fn count(&self, _key: OldKey) -> u32 {
        3
    }
}
