//! How a client's methods bind to the methods of the server it reached: all of them (the same
//! interface), or each one as the server's welcome lists it.

use std::collections::{HashMap, HashSet};

use crate::error::RpcError;
use crate::protocol::MethodEntry;
use crate::service::{MethodDescriptor, ServiceDescriptor};

/// A method of this client as the server has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodBinding {
    /// The server has it with the same shapes.
    Bound,
    /// The server does not have it.
    Missing,
    /// The server has it with other shapes.
    Incompatible {
        /// Its arguments differ.
        arguments: bool,
        /// Its result or error differs.
        result: bool,
    },
}

/// The binding of every method of a connection.
#[derive(Debug, Clone)]
pub(crate) enum Binding {
    /// The same interface: every method is bound.
    All,
    /// Another version: each method by its id.
    Each(HashMap<u32, MethodBinding>),
}

impl Binding {
    /// The binding of `service`'s methods to a server that listed `table` (`None`: the same
    /// interface).
    pub(crate) fn new(service: &ServiceDescriptor, table: Option<Vec<MethodEntry>>) -> Self {
        let Some(table) = table else {
            return Binding::All;
        };
        let schema = service.schema();
        // Only the entries of methods this client has: a hostile table of millions of entries
        // costs no map of them all.
        let mine: HashSet<u32> = schema.methods.iter().map(|m| m.id).collect();
        let server: HashMap<u32, &MethodEntry> = table
            .iter()
            .filter(|e| mine.contains(&e.id))
            .map(|e| (e.id, e))
            .collect();
        let each = schema
            .methods
            .iter()
            .map(|method| {
                let binding = match server.get(&method.id) {
                    None => MethodBinding::Missing,
                    Some(entry) => {
                        let (args, result) = method.hashes(&schema.types);
                        if (args, result) == (entry.args, entry.result) {
                            MethodBinding::Bound
                        } else {
                            MethodBinding::Incompatible {
                                arguments: args != entry.args,
                                result: result != entry.result,
                            }
                        }
                    }
                };
                if binding != MethodBinding::Bound {
                    tracing::warn!(
                        service = service.name,
                        method = method.name,
                        ?binding,
                        "the server runs another version of this method"
                    );
                }
                (method.id, binding)
            })
            .collect();
        Binding::Each(each)
    }

    /// The binding of the method with id `id`.
    pub(crate) fn of(&self, id: u32) -> MethodBinding {
        match self {
            Binding::All => MethodBinding::Bound,
            Binding::Each(each) => each.get(&id).copied().unwrap_or(MethodBinding::Bound),
        }
    }

    /// Whether `method` may be called.
    ///
    /// # Errors
    ///
    /// [`RpcError::UnknownMethod`] or [`RpcError::Incompatible`] if the server lacks it or has
    /// it with other shapes.
    pub(crate) fn check(&self, method: &MethodDescriptor) -> Result<(), RpcError> {
        match self.of(method.id) {
            MethodBinding::Bound => Ok(()),
            MethodBinding::Missing => Err(RpcError::UnknownMethod {
                method: method.name,
            }),
            MethodBinding::Incompatible { arguments, result } => Err(RpcError::Incompatible {
                method: method.name,
                arguments,
                result,
            }),
        }
    }
}
