//! Implementations write `async fn` (awaiting, holding state behind a lock), may be generic,
//! and `{Trait}Server::new` / `from_arc` of them is a `Dispatch`. Supertraits are kept.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::Dispatch;
use tokio::sync::Mutex;

/// Something with a name.
pub trait Named {
    /// The name.
    fn name(&self) -> String;
}

/// A key-value store.
#[rpc_core::service]
pub trait Store: Named {
    /// Stores `value` under `key`; returns the previous value.
    async fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>>;
    /// The value under `key`.
    async fn get(&self, key: String) -> Option<Vec<u8>>;
    /// The store's name.
    async fn whoami(&self) -> String;
}

#[derive(Default)]
struct MemStore<T> {
    entries: Mutex<Vec<(String, Vec<u8>)>>,
    tag: T,
}

impl<T: std::fmt::Display + Send + Sync + 'static> Named for MemStore<T> {
    fn name(&self) -> String {
        format!("mem-{}", self.tag)
    }
}

impl<T: std::fmt::Display + Send + Sync + 'static> Store for MemStore<T> {
    async fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().await;
        tokio::time::sleep(Duration::from_millis(1)).await; // held across an await: still `Send`
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                entries.push((key, value));
                None
            }
        }
    }

    async fn get(&self, key: String) -> Option<Vec<u8>> {
        tokio::task::yield_now().await;
        let entries = self.entries.lock().await;
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    async fn whoami(&self) -> String {
        self.name()
    }
}

fn assert_dispatch<D: Dispatch>(dispatch: D) -> D {
    dispatch
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let server = assert_dispatch(StoreServer::new(MemStore {
        entries: Mutex::default(),
        tag: 7,
    }));
    let client: StoreClient = rpc_core::memory::serve_and_connect(server).await?;
    assert_eq!(client.put("k".to_owned(), vec![1]).await?, None);
    assert_eq!(client.put("k".to_owned(), vec![2]).await?, Some(vec![1]));
    assert_eq!(client.get("k".to_owned()).await?, Some(vec![2]));
    assert_eq!(client.whoami().await?, "mem-7");

    // A service shared with other code: the server and the caller see the same state.
    let shared = Arc::new(MemStore {
        entries: Mutex::default(),
        tag: "shared",
    });
    let server = assert_dispatch(StoreServer::from_arc(Arc::clone(&shared)));
    let client: StoreClient = rpc_core::memory::serve_and_connect(server.clone()).await?;
    client.put("x".to_owned(), b"y".to_vec()).await?;
    assert_eq!(shared.get("x".to_owned()).await, Some(b"y".to_vec()));
    assert_eq!(Arc::strong_count(&shared), 3);
    Ok(())
}
