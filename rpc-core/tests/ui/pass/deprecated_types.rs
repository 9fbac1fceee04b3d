//! A deprecated type in a method's signature, allowed on the trait, warns nowhere in the
//! generated code either (here every warning is an error).
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
}
