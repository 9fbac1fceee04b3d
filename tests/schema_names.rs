//! Types that share a serde name: a generic type used with two parameters, or two types of one
//! name from two modules. Each is hashed by its own structure, so that a change inside one is
//! caught for the methods that use it, and only for them.
#![allow(unreachable_pub, missing_docs, dead_code)]

use rpc_core::schema::{Change, ServiceSchema};
use rpc_core::Client;

/// A service whose `users` returns a `Page<User>` and whose `groups` a `Page<Group>`: two
/// types of the serde name `Page`; `inbox` and `outbox` return an `Envelope` holding the first. `$user` is the body of `User`; `$error` that of the error
/// type `audit` returns, whose serde name `Error` is also the name of `log`'s error type.
macro_rules! directory {
    ($module:ident, { $($user:tt)* }, { $($error:tt)* }) => {
        mod $module {
            #![allow(dead_code)]
            use serde::{Deserialize, Serialize};

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct Page<T> {
                pub items: Vec<T>,
                pub next: Option<u32>,
            }

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct User { $($user)* }

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct Group {
                pub id: u64,
            }

            /// Refers to a `Page` that is not the first one traced.
            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct Envelope {
                pub page: Page<User>,
            }

            pub mod audit {
                #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
                pub enum Error { $($error)* }
            }

            pub mod log {
                #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
                pub enum Error {
                    Full,
                }
            }

            #[rpc_core::service(name = "Directory")]
            pub trait Directory {
                async fn groups(&self) -> Page<Group>;
                async fn users(&self) -> Page<User>;
                async fn log(&self, line: String) -> Result<(), log::Error>;
                async fn audit(&self) -> Result<u32, audit::Error>;
                async fn inbox(&self) -> Envelope;
                async fn outbox(&self) -> Envelope;
            }
        }
    };
}

directory!(base, { pub name: String }, { Denied, Busy });
directory!(same, { pub name: String }, { Denied, Busy });
directory!(user_grew, { pub name: String, pub age: u32 }, { Denied, Busy });
directory!(error_grew, { pub name: String }, { Denied, Busy, Gone });

fn schema<C: Client>() -> &'static ServiceSchema {
    C::SERVICE.schema()
}

#[test]
fn a_change_inside_a_generic_type_is_caught_for_the_method_that_uses_it() {
    let base = schema::<base::DirectoryClient>();
    let changed = schema::<user_grew::DirectoryClient>();
    let result = |method: &str| Change::Result {
        method: method.to_owned(),
    };
    // `users` returns the page; `inbox` and `outbox` return an envelope that holds it.
    assert_eq!(
        changed.breaking_changes(base),
        [result("users"), result("inbox"), result("outbox")],
        "{base:#?}"
    );
    assert_ne!(changed.fingerprint(), base.fingerprint());
}

#[test]
fn a_change_in_one_of_two_types_of_one_name_is_caught_for_its_method_only() {
    let base = schema::<base::DirectoryClient>();
    let changed = schema::<error_grew::DirectoryClient>();
    assert_eq!(
        changed.breaking_changes(base),
        [Change::Result {
            method: "audit".to_owned()
        }]
    );
}

#[test]
fn types_of_one_name_are_all_traced_and_named_the_same_way_each_time() {
    let base = schema::<base::DirectoryClient>();
    assert_eq!(base.untraced, Vec::<String>::new());
    // `groups` is traced first and keeps the plain names; the others are told apart.
    let names: Vec<&str> = base.types.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    // `Envelope`, in two methods, is listed once: its second trace is the first once its
    // `Page` is renamed.
    for plain in ["Page", "Group", "User", "Error", "Envelope"] {
        assert!(names.contains(&plain), "{names:?}");
    }
    assert_eq!(
        names.iter().filter(|n| n.starts_with("Page#")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("Error#")).count(),
        1,
        "{names:?}"
    );
    // The same types defined again get the same schema, names included.
    assert_eq!(schema::<same::DirectoryClient>(), base);
}

/// Two types that refer to each other, holding a type whose name an earlier, different type
/// took (and whose name sorts after theirs): the second method that uses them finds them equal
/// to the first one's only together.
mod linked {
    #![allow(dead_code)]
    use serde::{Deserialize, Serialize};

    pub mod x {
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        pub struct Tail {
            pub n: u32,
        }
    }

    pub mod y {
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        pub struct Tail {
            pub s: String,
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Ping {
        pub pong: Option<Box<Pong>>,
        pub tail: y::Tail,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Pong {
        pub ping: Option<Box<Ping>>,
    }

    #[rpc_core::service(name = "Linked")]
    pub trait Linked {
        async fn tail(&self) -> x::Tail;
        async fn ping(&self) -> Ping;
        async fn again(&self) -> Ping;
    }
}

#[test]
fn types_that_refer_to_each_other_are_listed_once() {
    let schema = schema::<linked::LinkedClient>();
    let names: Vec<&str> = schema.types.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for plain in ["Tail", "Ping", "Pong"] {
        assert!(names.contains(&plain), "{names:?}");
    }
    assert_eq!(schema.untraced, Vec::<String>::new());
}

/// A generic type used with two parameters that are alike but for their names (two ids, each a
/// `u64`): `v1` of a service, and `v2`, where the page's fields are swapped.
macro_rules! pages {
    ($module:ident, { $($fields:tt)* }) => {
        mod $module {
            #![allow(dead_code)]
            use serde::{Deserialize, Serialize};

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct Page<T> {
                pub items: Vec<T>,
                $($fields)*
            }

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct UserId(pub u64);

            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct GroupId(pub u64);

            #[rpc_core::service(name = "Pages")]
            pub trait Pages {
                async fn users(&self) -> Page<UserId>;
                async fn groups(&self) -> Page<GroupId>;
            }
        }
    };
}

pages!(pages_v1, { pub offset: u32, pub limit: u16 });
pages!(pages_v2, { pub limit: u16, pub offset: u32 });

/// The two pages are traced, as one type (their structures are the same, names left out), and
/// a change inside them is caught for both methods. Before, the second made the name `Page`
/// untraced, and both methods compared it by its name only: the swap went through unseen.
#[test]
fn a_generic_type_with_parameters_alike_but_for_their_names_is_traced() {
    let v1 = schema::<pages_v1::PagesClient>();
    let v2 = schema::<pages_v2::PagesClient>();
    assert_eq!(v1.untraced, Vec::<String>::new());
    let mut changes = v2.breaking_changes(v1);
    changes.sort_by_key(|change| format!("{change:?}"));
    assert_eq!(
        changes,
        [
            Change::Result {
                method: "groups".to_owned()
            },
            Change::Result {
                method: "users".to_owned()
            },
        ]
    );
}
