//! Tracing a service's types into shapes, with serde-reflection.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Error, Format, FormatHolder, Registry, Samples, Tracer, TracerConfig,
    VariantFormat,
};

use super::shape::{ContainerShape, Named, Shape, VariantShape};
use super::{MethodSchema, ServiceSchema};

/// Most rounds of tracing one type: each round finds one more variant of every enum in it
/// whose variants are not all known yet.
const MAX_ROUNDS: usize = 256;

/// Builds a [`ServiceSchema`]: generated code calls it once per service, the first time the
/// schema is needed.
pub struct SchemaBuilder {
    schema: ServiceSchema,
}

impl std::fmt::Debug for SchemaBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaBuilder")
            .field("service", &self.schema.service)
            .finish_non_exhaustive()
    }
}

impl SchemaBuilder {
    /// A schema for `service`, which calls back `callbacks`.
    pub fn new(service: &str, callbacks: Option<&str>) -> Self {
        Self {
            schema: ServiceSchema {
                service: service.to_owned(),
                callbacks: callbacks.map(str::to_owned),
                methods: Vec::new(),
                types: Default::default(),
                untraced: Vec::new(),
            },
        }
    }

    /// The shape of `T`, traced from its `Deserialize`. A type whose `Deserialize` cannot be
    /// traced (it validates what it reads) is known by `written`, its Rust spelling, instead.
    pub fn shape<T: DeserializeOwned>(&mut self, written: &str) -> Shape {
        match trace::<T>() {
            Some((mut shape, registry)) => {
                let mut traced = BTreeMap::new();
                for (name, container) in registry {
                    match container_shape(&container) {
                        Some(container) => {
                            traced.insert(name, container);
                        }
                        // Not reached for a trace that completed; known by its name if it is.
                        None => self.schema.untraced.push(name),
                    }
                }
                let renames = self.renames(&traced);
                shape.rename(&renames);
                for (name, mut container) in traced {
                    container.rename(&renames);
                    let name = renames.get(&name).cloned().unwrap_or(name);
                    match self.schema.types.get(&name) {
                        // Two structures under one new name (their hashes were cut short by
                        // the hash's bound): neither can be told by its name.
                        Some(known) if *known != container => {
                            self.schema.types.remove(&name);
                            self.schema.untraced.push(name);
                        }
                        Some(_) => {}
                        None if self.schema.untraced.contains(&name) => {}
                        None => {
                            self.schema.types.insert(name, container);
                        }
                    }
                }
                shape
            }
            None => {
                // A type traced under this name is no longer told apart from this one.
                self.schema.types.remove(written);
                self.schema.untraced.push(written.to_owned());
                Shape::TypeName(written.to_owned())
            }
        }
    }

    /// New names for the types of one trace (`traced`) whose serde names other types of the
    /// service already hold with another structure (two `Page<T>`s, two `Error`s, or a type
    /// that holds one of those), or whose name is also an untraced type's: `Name#` and a hash
    /// of the type's structure. Structures are compared by that hash, which leaves names out:
    /// a type that holds a renamed one is the known type of its name if their structures
    /// agree, whatever the types in them are called, and types that refer to each other need
    /// no order. The new name is the same whatever order the methods are traced in, and the
    /// same for every method that uses the type.
    fn renames(&self, traced: &BTreeMap<String, ContainerShape>) -> BTreeMap<String, String> {
        traced
            .keys()
            .filter_map(|name| {
                let hash = super::hash::structure(name, traced);
                let clash = self.schema.untraced.contains(name)
                    || self.schema.types.contains_key(name)
                        && super::hash::structure(name, &self.schema.types) != hash;
                clash.then(|| (name.clone(), format!("{name}#{hash:016x}")))
            })
            .collect()
    }

    /// Adds a method.
    pub fn method(&mut self, method: MethodSchema) {
        self.schema.methods.push(method);
    }

    /// The schema, with the named types traced on the way.
    pub fn finish(self) -> ServiceSchema {
        self.schema
    }
}

/// Traces `T` until every variant of every enum in it is known: serde-reflection learns one
/// variant of an enum per pass, and only repeats passes for the outermost type, so the passes
/// are replayed on a fresh tracer, clearing the enums it reported incomplete after each, until
/// none is. `None` if `T` cannot be traced.
fn trace<T: DeserializeOwned>() -> Option<(Shape, Registry)> {
    let samples = Samples::new();
    let mut clears: Vec<Vec<String>> = Vec::new();
    while clears.len() < MAX_ROUNDS {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut format = None;
        for round in 0..=clears.len() {
            let (traced, _) = tracer.trace_type_once::<T>(&samples).ok()?;
            format = Some(traced);
            for name in clears.get(round).into_iter().flatten() {
                tracer.check_incomplete_enum(name);
            }
        }
        match tracer.registry() {
            Ok(registry) => {
                let mut format = format?;
                format.normalize().ok()?;
                return Some((shape(&format)?, registry));
            }
            Err(Error::MissingVariants(names)) => clears.push(names),
            Err(_) => return None,
        }
    }
    None
}

fn shapes(formats: &[Format]) -> Option<Vec<Shape>> {
    formats.iter().map(shape).collect()
}

fn named(fields: &[serde_reflection::Named<Format>]) -> Option<Vec<Named<Shape>>> {
    fields
        .iter()
        .map(|field| {
            Some(Named {
                name: field.name.clone(),
                value: shape(&field.value)?,
            })
        })
        .collect()
}

/// `format` as a shape; `None` if part of it is still unknown.
fn shape(format: &Format) -> Option<Shape> {
    Some(match format {
        Format::Variable(_) => return None,
        Format::TypeName(name) => Shape::TypeName(name.clone()),
        Format::Unit => Shape::Unit,
        Format::Bool => Shape::Bool,
        Format::I8 => Shape::I8,
        Format::I16 => Shape::I16,
        Format::I32 => Shape::I32,
        Format::I64 => Shape::I64,
        Format::I128 => Shape::I128,
        Format::U8 => Shape::U8,
        Format::U16 => Shape::U16,
        Format::U32 => Shape::U32,
        Format::U64 => Shape::U64,
        Format::U128 => Shape::U128,
        Format::F32 => Shape::F32,
        Format::F64 => Shape::F64,
        Format::Char => Shape::Char,
        Format::Str => Shape::Str,
        Format::Bytes => Shape::Bytes,
        Format::Option(inner) => Shape::Option(Box::new(shape(inner)?)),
        Format::Seq(inner) => Shape::Seq(Box::new(shape(inner)?)),
        Format::Map { key, value } => Shape::Map {
            key: Box::new(shape(key)?),
            value: Box::new(shape(value)?),
        },
        Format::Tuple(items) => Shape::Tuple(shapes(items)?),
        Format::TupleArray { content, size } => Shape::TupleArray {
            content: Box::new(shape(content)?),
            size: *size,
        },
    })
}

fn container_shape(container: &ContainerFormat) -> Option<ContainerShape> {
    Some(match container {
        ContainerFormat::UnitStruct => ContainerShape::UnitStruct,
        ContainerFormat::NewTypeStruct(inner) => {
            ContainerShape::NewTypeStruct(Box::new(shape(inner)?))
        }
        ContainerFormat::TupleStruct(items) => ContainerShape::TupleStruct(shapes(items)?),
        ContainerFormat::Struct(fields) => ContainerShape::Struct(named(fields)?),
        ContainerFormat::Enum(variants) => ContainerShape::Enum(
            variants
                .iter()
                .map(|(index, variant)| {
                    let value = match &variant.value {
                        VariantFormat::Variable(_) => return None,
                        VariantFormat::Unit => VariantShape::Unit,
                        VariantFormat::NewType(inner) => {
                            VariantShape::NewType(Box::new(shape(inner)?))
                        }
                        VariantFormat::Tuple(items) => VariantShape::Tuple(shapes(items)?),
                        VariantFormat::Struct(fields) => VariantShape::Struct(named(fields)?),
                    };
                    Some((
                        *index,
                        Named {
                            name: variant.name.clone(),
                            value,
                        },
                    ))
                })
                .collect::<Option<_>>()?,
        ),
    })
}
