//! What the interface check sees of types whose `Deserialize` checks what it reads: traced with
//! values such types accept, so that changes beside them are caught; and, for one that refuses
//! every value tried, known by its name alone, without hiding the other arguments' changes.
#![allow(unreachable_pub, missing_docs, dead_code)]

mod common;

use common::Served;
use rpc_core::schema::{Change, ServiceSchema};
use rpc_core::{Client, ClientConfig, MethodBinding, ServerConfig};

fn schema_of<C: Client>() -> &'static ServiceSchema {
    C::SERVICE.schema()
}

/// The change of `method`'s arguments.
fn arguments_of(method: &str) -> Vec<Change> {
    vec![Change::Arguments {
        method: method.to_owned(),
    }]
}

/// An even number that is never zero: its `Deserialize` checks what it reads and refuses every
/// number the tracer tries (0 and 1), so its shape cannot be traced and it is known by its
/// name.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct NonZero(u32);

impl<'de> serde::Deserialize<'de> for NonZero {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match <u32 as serde::Deserialize>::deserialize(deserializer)? {
            n if n == 0 || n % 2 == 1 => Err(serde::de::Error::custom("zero or odd")),
            n => Ok(Self(n)),
        }
    }
}

/// An identifier of 16 bytes, read as bytes and refused at any other length (as `uuid::Uuid`
/// reads itself from a binary format).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Id([u8; 16]);

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("16 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Id, E> {
                bytes
                    .try_into()
                    .map(Id)
                    .map_err(|_| E::invalid_length(bytes.len(), &self))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// A time written as RFC 3339 text, refused if it does not look like one (as a `DateTime`
/// parses itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Time(String);

impl<'de> serde::Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() == 20 && text.as_bytes().get(10) == Some(&b'T') && text.ends_with('Z') {
            Ok(Self(text))
        } else {
            Err(serde::de::Error::custom("not an RFC 3339 time"))
        }
    }
}

/// A job whose fields check what they read, with its two counts of type `$count`.
macro_rules! jobs {
    ($module:ident, $count:ty) => {
        mod $module {
            use super::{Id, Time};

            #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
            pub struct Job {
                pub id: Id,
                pub at: Time,
                pub retries: $count,
                pub priority: std::num::NonZeroU32,
            }

            #[rpc_core::service(name = "Jobs")]
            pub trait Jobs {
                async fn submit(&self, job: Job) -> u64;
            }
        }
    };
}

jobs!(jobs_u32, u32);
jobs!(jobs_u64, u64);

/// Types whose `Deserialize` checks what it reads are traced with values such types accept
/// (numbers of one, 16 bytes, times, ...), so that a change beside them in the same argument
/// is caught: compared by the argument's spelling (`Job`), both versions looked alike.
#[test]
fn types_that_check_what_they_read_are_traced() {
    let old = schema_of::<jobs_u32::JobsClient>();
    let new = schema_of::<jobs_u64::JobsClient>();
    assert!(old.untraced.is_empty(), "{:?}", old.untraced);
    assert_eq!(new.breaking_changes(old), arguments_of("submit"));
    assert_ne!(new.fingerprint(), old.fingerprint());
}

/// A service whose `tag` takes a `NonZero` beside a `Label` whose field is a `$size`.
macro_rules! tagger {
    ($module:ident, $size:ty) => {
        mod $module {
            use super::NonZero;

            #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
            pub struct Label {
                pub size: $size,
            }

            #[rpc_core::service(name = "Tagger")]
            pub trait Tagger {
                async fn tag(&self, id: NonZero, label: Label) -> u32;
            }

            pub struct Tags;

            impl Tagger for Tags {
                async fn tag(&self, _: NonZero, _: Label) -> u32 {
                    1
                }
            }
        }
    };
}

tagger!(label_u32, u32);
tagger!(label_u64, u64);

/// An argument whose shape cannot be traced is known by its name, and only it: a change in
/// another argument of its method is still caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untraced_argument_hides_no_other_arguments_change() {
    let old = schema_of::<label_u32::TaggerClient>();
    let new = schema_of::<label_u64::TaggerClient>();
    assert_eq!(new.breaking_changes(old), arguments_of("tag"));
    assert_ne!(new.fingerprint(), old.fingerprint());
    let served = Served::<()>::start(
        |_| label_u32::TaggerServer::new(label_u32::Tags),
        &ServerConfig::default(),
    );
    let client: label_u64::TaggerClient = served.client(&ClientConfig::new()).await;
    assert_eq!(
        client.handle().binding("tag"),
        Some(MethodBinding::Incompatible {
            arguments: true,
            result: false
        })
    );
    // Only it is known by its name.
    assert_eq!(old.untraced, ["NonZero"]);
}
