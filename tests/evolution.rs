//! Interfaces that evolve: two versions of a service talk as long as the methods they share
//! agree, and every incompatible change is caught, by method name, before anything is
//! misdecoded.
#![allow(unreachable_pub, missing_docs, dead_code)]

mod common;

use common::unique_endpoint;
use rpc_core::schema::{Change, ServiceSchema};
use rpc_core::{Client, ClientConfig, MethodBinding, RpcError, ServerConfig};

/// Version 1 of the store.
mod v1 {
    use serde::{Deserialize, Serialize};

    /// How an item is kept.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Kind {
        /// Kept in memory.
        Hot,
        /// Kept on disk.
        Cold,
    }

    /// Where an item came from.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Meta {
        /// Its tags.
        pub tags: Vec<String>,
        /// Its size.
        pub size: u32,
    }

    /// An item.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Item {
        /// Its name.
        pub name: String,
        /// Its origin.
        pub meta: Meta,
        /// How it is kept.
        pub kind: Kind,
    }

    /// The store.
    #[rpc_core::service(name = "Store")]
    pub trait Store {
        /// Adds two numbers.
        async fn add(&self, a: i64, b: i64) -> i64;
        /// Stores an item; answers with its number.
        async fn put(&self, item: Item) -> u32;
        /// How many items there are.
        async fn count(&self) -> u64;
    }

    /// A store that counts.
    pub struct Counter;

    impl Store for Counter {
        async fn add(&self, a: i64, b: i64) -> i64 {
            a + b
        }

        async fn put(&self, item: Item) -> u32 {
            item.meta.size
        }

        async fn count(&self) -> u64 {
            7
        }
    }
}

/// Version 2: a method added, the others reordered.
mod v2 {
    use super::v1::Item;

    /// The store, with `remove`.
    #[rpc_core::service(name = "Store")]
    pub trait Store {
        /// Removes an item.
        async fn remove(&self, number: u32) -> bool;
        /// How many items there are.
        async fn count(&self) -> u64;
        /// Stores an item; answers with its number.
        async fn put(&self, item: Item) -> u32;
        /// Adds two numbers.
        async fn add(&self, a: i64, b: i64) -> i64;
    }

    /// A store that removes.
    pub struct Remover;

    impl Store for Remover {
        async fn remove(&self, number: u32) -> bool {
            number == 1
        }

        async fn count(&self) -> u64 {
            8
        }

        async fn put(&self, item: Item) -> u32 {
            item.meta.size + 100
        }

        async fn add(&self, a: i64, b: i64) -> i64 {
            a + b
        }
    }
}

/// One change deep inside `put`'s argument, or in a result: `$meta` and `$kind` replace
/// `Meta` and `Kind`; `$count` is `count`'s result type.
macro_rules! changed {
    ($module:ident, { $($meta:tt)* }, { $($kind:tt)* }, $count:ty) => {
        mod $module {
            #![allow(dead_code)]
            use serde::{Deserialize, Serialize};

            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub enum Kind { $($kind)* }

            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub struct Meta { $($meta)* }

            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub struct Item {
                pub name: String,
                pub meta: Meta,
                pub kind: Kind,
            }

            #[rpc_core::service(name = "Store")]
            pub trait Store {
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn put(&self, item: Item) -> u32;
                async fn count(&self) -> $count;
            }
        }
    };
}

changed!(same, { pub tags: Vec<String>, pub size: u32 }, { Hot, Cold }, u64);
changed!(field_added, { pub tags: Vec<String>, pub size: u32, pub owner: String }, { Hot, Cold }, u64);
changed!(field_removed, { pub tags: Vec<String> }, { Hot, Cold }, u64);
changed!(field_retyped, { pub tags: Vec<String>, pub size: u64 }, { Hot, Cold }, u64);
changed!(field_renamed, { pub labels: Vec<String>, pub size: u32 }, { Hot, Cold }, u64);
changed!(variant_added, { pub tags: Vec<String>, pub size: u32 }, { Hot, Cold, Frozen }, u64);
changed!(result_changed, { pub tags: Vec<String>, pub size: u32 }, { Hot, Cold }, i32);

fn schema<C: Client>() -> &'static ServiceSchema {
    C::SERVICE.schema()
}

fn argument_change(method: &str) -> Vec<Change> {
    vec![Change::Arguments {
        method: method.to_owned(),
    }]
}

#[test]
fn each_incompatible_change_is_caught_by_method_name() {
    let base = schema::<v1::StoreClient>();
    // The same types, defined again: the Rust names and places of types do not matter.
    assert_eq!(schema::<same::StoreClient>().breaking_changes(base), []);
    assert_eq!(
        schema::<same::StoreClient>().fingerprint(),
        base.fingerprint()
    );
    for (what, changed) in [
        ("a field added", schema::<field_added::StoreClient>()),
        ("a field removed", schema::<field_removed::StoreClient>()),
        ("a field retyped", schema::<field_retyped::StoreClient>()),
        ("a field renamed", schema::<field_renamed::StoreClient>()),
        (
            "an enum variant added",
            schema::<variant_added::StoreClient>(),
        ),
    ] {
        assert_eq!(
            changed.breaking_changes(base),
            argument_change("put"),
            "{what}"
        );
    }
    assert_eq!(
        schema::<result_changed::StoreClient>().breaking_changes(base),
        [Change::Result {
            method: "count".to_owned()
        }]
    );
    // Adding a method breaks nothing; removing one does.
    let newer = schema::<v2::StoreClient>();
    assert_eq!(newer.breaking_changes(base), []);
    assert_eq!(
        base.breaking_changes(newer),
        [Change::Removed {
            method: "remove".to_owned()
        }]
    );
}

#[test]
fn method_ids_do_not_depend_on_position() {
    let (old, new) = (schema::<v1::StoreClient>(), schema::<v2::StoreClient>());
    for method in &old.methods {
        let same = new.method(&method.name).expect("kept");
        assert_eq!(same.id, method.id, "{}", method.name);
    }
}

async fn serve<D: rpc_core::Dispatch>(
    service: D,
) -> (rpc_transport::Endpoint, Option<tempfile::TempDir>) {
    let (endpoint, dir) = unique_endpoint();
    let server = rpc_transport::Server::bind_with(&endpoint, service, &ServerConfig::default())
        .expect("bind");
    tokio::spawn(server.run());
    (endpoint, dir)
}

fn item(size: u32) -> v1::Item {
    v1::Item {
        name: "a".into(),
        meta: v1::Meta {
            tags: vec!["t".into()],
            size,
        },
        kind: v1::Kind::Cold,
    }
}

/// An older client keeps working with a newer server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_client_works_with_a_new_server() {
    let (endpoint, _dir) = serve(v2::StoreServer::new(v2::Remover)).await;
    let old: v1::StoreClient = rpc_transport::connect_with(&endpoint, &ClientConfig::new())
        .await
        .expect("connect");
    assert_eq!(old.add(2, 3).await.expect("add"), 5);
    assert_eq!(old.put(item(4)).await.expect("put"), 104);
    assert_eq!(old.count().await.expect("count"), 8);
    for method in ["add", "put", "count"] {
        assert!(old.handle().supports(method), "{method}");
    }
}

/// A newer client asks before calling what an older server lacks, and gets a typed error per
/// call if it does not; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_is_told_what_an_old_server_lacks() {
    let (endpoint, _dir) = serve(v1::StoreServer::new(v1::Counter)).await;
    let new: v2::StoreClient = rpc_transport::connect_with(&endpoint, &ClientConfig::new())
        .await
        .expect("connect");
    assert!(!new.handle().supports("remove"));
    assert_eq!(new.handle().binding("remove"), Some(MethodBinding::Missing));
    let missing = new.remove(1).await;
    assert!(
        matches!(missing, Err(RpcError::UnknownMethod { method: "remove" })),
        "{missing:?}"
    );
    assert_eq!(new.count().await.expect("count"), 7);
    assert_eq!(new.put(item(4)).await.expect("put"), 4);
}

/// A client whose argument struct gained a field is told at connect which method differs and
/// how; its other methods keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_method_is_refused_and_the_others_work() {
    let (endpoint, _dir) = serve(v1::StoreServer::new(v1::Counter)).await;
    let changed: field_added::StoreClient =
        rpc_transport::connect_with(&endpoint, &ClientConfig::new())
            .await
            .expect("connect");
    assert_eq!(
        changed.handle().binding("put"),
        Some(MethodBinding::Incompatible {
            arguments: true,
            result: false
        })
    );
    let item = field_added::Item {
        name: "a".into(),
        meta: field_added::Meta {
            tags: vec![],
            size: 1,
            owner: "me".into(),
        },
        kind: field_added::Kind::Hot,
    };
    let refused = changed.put(item).await;
    assert!(
        matches!(
            refused,
            Err(RpcError::Incompatible {
                method: "put",
                arguments: true,
                result: false
            })
        ),
        "{refused:?}"
    );
    assert_eq!(changed.add(1, 1).await.expect("add"), 2);
}

/// One interface written in two orders, and a renamed one that calls another back.
#[allow(dead_code)]
mod orders {
    pub mod ab {
        #[rpc_core::service(name = "Order")]
        pub trait Order {
            async fn a(&self) -> u32;
            async fn b(&self, x: String) -> u64;
        }
    }

    pub mod ba {
        #[rpc_core::service(name = "Order")]
        pub trait Order {
            async fn b(&self, x: String) -> u64;
            async fn a(&self) -> u32;
        }
    }

    pub mod renamed {
        #[rpc_core::service(name = "Orders", callbacks = super::ab::Order)]
        pub trait Order {
            async fn a(&self) -> u32;
            async fn b(&self, x: String) -> u64;
        }
    }
}

/// Reordering a trait's methods leaves its fingerprint alone: a callback service, whose
/// fingerprint must be equal on both sides, can be reordered too.
#[test]
fn reordered_methods_keep_the_fingerprint() {
    let ab = schema::<orders::ab::OrderClient>();
    let ba = schema::<orders::ba::OrderClient>();
    assert_eq!(ab.fingerprint(), ba.fingerprint());
    assert_eq!(ab.breaking_changes(ba), []);
}

/// A new name or another callback service rejects every client of the other version at
/// connect: both are breaking changes.
#[test]
fn a_new_name_or_other_callbacks_are_breaking() {
    let old = schema::<orders::ab::OrderClient>();
    let new = schema::<orders::renamed::OrderClient>();
    assert_eq!(
        new.breaking_changes(old),
        [
            Change::Renamed {
                older: "Order".into(),
                newer: "Orders".into()
            },
            Change::Callbacks {
                older: None,
                newer: Some("Order".into())
            }
        ]
    );
    assert_eq!(
        new.breaking_changes(old)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "the service `Order` was renamed `Orders`",
            "the callback service changed from none to `Order`"
        ]
    );
}

/// A service of 30 methods, for the size of its handshake.
#[allow(dead_code)]
mod thirty {
    macro_rules! thirty {
        ($($method:ident)*) => {
            #[rpc_core::service(name = "Thirty")]
            pub trait Thirty {
                $(async fn $method(&self, a: u32, b: String) -> Vec<u64>;)*
            }

            pub struct Impl;

            impl Thirty for Impl {
                $(async fn $method(&self, _a: u32, _b: String) -> Vec<u64> {
                    Vec::new()
                })*
            }
        };
    }
    thirty!(m00 m01 m02 m03 m04 m05 m06 m07 m08 m09 m10 m11 m12 m13 m14
            m15 m16 m17 m18 m19 m20 m21 m22 m23 m24 m25 m26 m27 m28 m29);
}

/// The handshake stays small: the hello does not grow with the methods, a server's welcome to
/// a client of the same interface is a few bytes, and only a client of another version gets
/// the method table. Measured on what a real server sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_of_thirty_methods_is_small() {
    use rpc_core::frame::{FrameRead, FrameWrite};
    use rpc_core::protocol::Header;

    let service = <thirty::ThirtyClient as Client>::SERVICE;
    // The frames of a handshake with a client whose interface has `fingerprint`, with their
    // length prefixes: (hello, the server's welcome).
    let handshake = |fingerprint: u64| async move {
        let ((mut reader, mut writer), _serving) =
            common::serve_in_memory(thirty::ThirtyServer::new(thirty::Impl));
        let mut hello = common::hello(service);
        if let Header::Hello {
            fingerprint: ours, ..
        } = &mut hello
        {
            *ours = fingerprint;
        }
        let hello = common::frame(&hello, &[]);
        writer
            .write_frames(&[bytes::Bytes::from(hello.clone())])
            .await
            .expect("hello");
        let welcome = common::within("the welcome", reader.read_frame(1 << 20))
            .await
            .expect("read")
            .expect("a welcome");
        assert!(
            matches!(
                postcard::take_from_bytes::<Header>(&welcome),
                Ok((Header::Welcome { .. }, _))
            ),
            "{welcome:?}"
        );
        (hello.len(), 4 + welcome.len())
    };
    let (hello, same) = handshake(service.fingerprint()).await;
    let (_, other) = handshake(service.fingerprint() ^ 1).await;
    println!("30 methods: hello {hello} bytes, welcome {same} bytes, welcome with the method table {other} bytes");
    assert!(hello <= 32, "hello {hello}");
    assert!(same <= 12, "welcome {same}");
    assert!(other > 30 * 8, "no method table: {other}");
    assert!(other <= 30 * 25 + 12, "welcome with the table {other}");
}
