//! What a service looks like on the wire, as data: every method with its id, kind, arguments,
//! result and error types, docs, and the serde shape of each type, traced from its
//! `Deserialize` implementation (structure, field and variant names; not the Rust names of the
//! types).
//!
//! The handshake compares services method by method with it ([`MethodSchema::hashes`]), a
//! running server describes itself with it (`ClientHandle::describe`), and a repository can
//! commit a service's schema and flag breaking changes against it
//! ([`ServiceSchema::breaking_changes`]).

mod hash;
mod shape;
mod trace;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use shape::{ContainerShape, Named, Shape, VariantShape};
pub use trace::SchemaBuilder;

/// The schema of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSchema {
    /// The service's name in the handshake.
    pub service: String,
    /// The service the server calls back on its clients, if any.
    pub callbacks: Option<String>,
    /// The methods, in the trait's order.
    pub methods: Vec<MethodSchema>,
    /// The named types (structs and enums) the shapes refer to, by their serde name. Types of
    /// one serde name that differ (a generic `Page<T>` used with two `T`s, two `Error`s of
    /// different modules) are told apart: the first one traced keeps the name, each other one
    /// is listed as `Name#` and a hash of its structure.
    pub types: BTreeMap<String, ContainerShape>,
    /// Types whose shape could not be traced (a `Deserialize` that refuses every value the
    /// tracer tries, two types of one serde name inside one argument, two structures under one
    /// name too large for the hash to tell apart), by their Rust or serde name: they are
    /// compared by name only. Building the schema logs a warning for each.
    pub untraced: Vec<String>,
}

/// The schema of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The method's name.
    pub name: String,
    /// Its wire id: a hash of its name, or the id it was given (`#[rpc(id = N)]`).
    pub id: u32,
    /// `call`, `oneway` or `stream` (a stream of results).
    pub kind: String,
    /// Its doc comment.
    pub docs: String,
    /// The arguments, as written: name and type.
    pub args: Vec<(String, String)>,
    /// The shape of the argument tuple on the wire (without a stream argument): a tuple of each
    /// argument's shape, traced on its own, so that an argument that cannot be traced is known
    /// by its spelling and the others still by their shapes.
    pub args_shape: Shape,
    /// The stream argument, if the method takes one: its name, item type and item shape.
    pub stream_arg: Option<(String, String, Shape)>,
    /// The result type as written (for a stream, the item type).
    pub result: String,
    /// The shape of the result (of each item, for a stream).
    pub result_shape: Shape,
    /// The typed application error of a method declared `-> Result<T, E>`.
    pub error: Option<(String, Shape)>,
}

/// How two schemas of a service differ: for one method, or for the whole service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The service's name changed: every client of the other name is rejected at connect.
    Renamed {
        /// The name in the older schema.
        older: String,
        /// The name in the newer one.
        newer: String,
    },
    /// The service calls back another service, or calls back none where it did, or the other
    /// way round: every client of the other version is rejected at connect. (Any change inside
    /// the callback service rejects them too, an added method included: the two sides compare
    /// it whole. That service's own schema shows it as a change of its
    /// [`fingerprint`](ServiceSchema::fingerprint), which [`ServiceSchema::breaking_changes`]
    /// does not report for an added method.)
    Callbacks {
        /// The callback service in the older schema.
        older: Option<String>,
        /// The one in the newer schema.
        newer: Option<String>,
    },
    /// The method is gone: clients that call it get `UnknownMethod`.
    Removed {
        /// The method.
        method: String,
    },
    /// The method's arguments changed shape: clients of the other version cannot call it.
    Arguments {
        /// The method.
        method: String,
    },
    /// The method's result (or error, or kind) changed shape.
    Result {
        /// The method.
        method: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |name: &Option<String>| match name {
            Some(name) => format!("`{name}`"),
            None => "none".to_owned(),
        };
        match self {
            Change::Renamed { older, newer } => {
                write!(f, "the service `{older}` was renamed `{newer}`")
            }
            Change::Callbacks { older, newer } => write!(
                f,
                "the callback service changed from {} to {}",
                named(older),
                named(newer)
            ),
            Change::Removed { method } => write!(f, "method `{method}` was removed"),
            Change::Arguments { method } => {
                write!(f, "the arguments of method `{method}` changed shape")
            }
            Change::Result { method } => write!(f, "the result of method `{method}` changed shape"),
        }
    }
}

impl ServiceSchema {
    /// The fingerprint the handshake compares first: equal fingerprints mean every method is
    /// the same on both sides.
    pub fn fingerprint(&self) -> u64 {
        hash::fingerprint(self)
    }

    /// The fingerprint of a schema from elsewhere (a server's answer to `describe`), or `None`
    /// if computing it would write more than a million shapes in all: the fingerprint of a
    /// hostile schema that repeats a huge method could keep its caller busy for hours. No
    /// schema a program derives comes near the bound.
    pub fn bounded_fingerprint(&self) -> Option<u64> {
        hash::bounded_fingerprint(self)
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&MethodSchema> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// What a client built against `older` would break on against this schema: a new name or
    /// another callback service (which reject it at connect), methods removed, and methods
    /// whose arguments or result changed shape. Added methods are not breaking. A change
    /// inside the callback service is in that service's own schema.
    pub fn breaking_changes(&self, older: &ServiceSchema) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.service != older.service {
            changes.push(Change::Renamed {
                older: older.service.clone(),
                newer: self.service.clone(),
            });
        }
        if self.callbacks != older.callbacks {
            changes.push(Change::Callbacks {
                older: older.callbacks.clone(),
                newer: self.callbacks.clone(),
            });
        }
        for old in &older.methods {
            let Some(new) = self.methods.iter().find(|m| m.id == old.id) else {
                changes.push(Change::Removed {
                    method: old.name.clone(),
                });
                continue;
            };
            let (old_args, old_result) = old.hashes(&older.types);
            let (new_args, new_result) = new.hashes(&self.types);
            if old_args != new_args {
                changes.push(Change::Arguments {
                    method: old.name.clone(),
                });
            }
            if old_result != new_result {
                changes.push(Change::Result {
                    method: old.name.clone(),
                });
            }
        }
        changes
    }
}

impl MethodSchema {
    /// Hashes of the method's argument side (kind, argument tuple, stream argument) and result
    /// side (result and error), with named types expanded from `types`: two methods whose
    /// hashes agree encode and decode the same bytes.
    pub fn hashes(&self, types: &BTreeMap<String, ContainerShape>) -> (u64, u64) {
        hash::method_hashes(self, types)
    }
}
