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
    /// traced (it refuses every value the tracer tries, or holds two types of one serde name,
    /// which the tracer cannot tell apart) is known by `written`, its Rust spelling, instead,
    /// and a warning says so.
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
                        None => {
                            tracing::warn!(
                                r#type = name,
                                "the shape of this type cannot be traced: it is compared by its \
                                 name, and a change inside it is not caught"
                            );
                            self.schema.untraced.push(name);
                        }
                    }
                }
                let renames = self.renames(&traced);
                shape.rename(&renames);
                let whole: Vec<bool> = traced
                    .keys()
                    .map(|name| super::hash::whole_structure(name, &traced).is_some())
                    .collect();
                for ((name, mut container), whole) in traced.into_iter().zip(whole) {
                    container.rename(&renames);
                    let name = renames.get(&name).cloned().unwrap_or(name);
                    match self.schema.types.get(&name) {
                        // Under one name, a structure that only the names of the types in it
                        // tell from the known one (a `Page<UserId>` beside a `Page<GroupId>`
                        // whose ids are alike) is the known one: its hash is the same, names
                        // left out. Two whose hashes were cut short by the hash's bounds
                        // cannot be told apart: neither is known by more than its name.
                        Some(known)
                            if *known != container
                                && !(whole
                                    && super::hash::whole_structure(&name, &self.schema.types)
                                        .is_some()) =>
                        {
                            tracing::warn!(
                                r#type = name,
                                "two types of this name are too large for their hashes to tell \
                                 them apart: both are compared by their name, and a change inside \
                                 them is not caught"
                            );
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
                tracing::warn!(
                    r#type = written,
                    "the shape of this type cannot be traced (its Deserialize refused every \
                     value tried, it holds two types of one serde name such as a Page<User> \
                     and a Page<Group>, or a format the tracer cannot follow): it is compared \
                     by its name, and a change inside it is not caught"
                );
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

/// The texts handed to `Deserialize` implementations that read a string, after the tracer's
/// own empty one failed: values that common validating types accept (a time, a date, a UUID, a
/// URL, an address). One text serves every string of a trace, so a type that holds two kinds
/// of them (a time and a URL) is still not traced.
const TEXTS: [&str; 6] = [
    "",
    "1970-01-01T00:00:00Z",
    "1970-01-01",
    "00000000-0000-0000-0000-000000000000",
    "http://localhost/",
    "127.0.0.1",
];

/// The bytes handed to `Deserialize` implementations that read bytes, after the tracer's own
/// empty ones failed: as many as a UUID has.
const BYTES: [u8; 16] = [0; 16];

/// The values the tracer hands to `Deserialize` implementations: the tracer's own (zeros,
/// empty strings and bytes) for `text` `None`; else, for types that check what they read
/// (`NonZeroU32`, `Uuid`, a `DateTime`, ...), numbers of one, 16 bytes and `text`. The values
/// give the trace nothing but a way through: the shape is the same whichever values let it
/// through, unless a `Deserialize` reads one way or another depending on a value it read (a
/// version number that chooses a layout), whose shape then depends on which values were
/// tried: comparing two versions then finds a change (a method bound as incompatible), never
/// none where there is one.
fn tracer_config(text: Option<&'static str>) -> TracerConfig {
    let Some(text) = text else {
        return TracerConfig::default();
    };
    TracerConfig::default()
        .default_u8_value(1)
        .default_u16_value(1)
        .default_u32_value(1)
        .default_u64_value(1)
        .default_u128_value(1)
        .default_i8_value(1)
        .default_i16_value(1)
        .default_i32_value(1)
        .default_i64_value(1)
        .default_i128_value(1)
        .default_f32_value(1.0)
        .default_f64_value(1.0)
        .default_borrowed_str_value(text)
        .default_string_value(text.to_owned())
        .default_borrowed_bytes_value(&BYTES)
        .default_byte_buf_value(BYTES.to_vec())
}

/// Why a trace did not complete.
enum Failed {
    /// A `Deserialize` refused a value the tracer gave it: other values may let it through.
    Refused,
    /// Anything else (a format the tracer cannot follow, such as an untagged enum's; an enum
    /// with too many variants to learn): other values would fail the same way.
    Untraceable,
}

/// Traces `T` with the tracer's own values, then, while its `Deserialize` refuses them, with
/// numbers of one, 16 bytes and each of [`TEXTS`] in turn; `None` if none lets it through.
fn trace<T: DeserializeOwned>() -> Option<(Shape, Registry)> {
    for text in std::iter::once(None).chain(TEXTS.iter().copied().map(Some)) {
        match trace_with::<T>(text) {
            Ok(traced) => return Some(traced),
            Err(Failed::Refused) => {}
            Err(Failed::Untraceable) => return None,
        }
    }
    None
}

/// Traces `T` until every variant of every enum in it is known: serde-reflection learns one
/// variant of an enum per pass, and only repeats passes for the outermost type, so the passes
/// are replayed on a fresh tracer, clearing the enums it reported incomplete after each, until
/// none is, with the values of [`tracer_config`]`(text)`.
fn trace_with<T: DeserializeOwned>(
    text: Option<&'static str>,
) -> Result<(Shape, Registry), Failed> {
    let samples = Samples::new();
    let mut clears: Vec<Vec<String>> = Vec::new();
    while clears.len() < MAX_ROUNDS {
        let mut tracer = Tracer::new(tracer_config(text));
        let mut format = None;
        for round in 0..=clears.len() {
            let (traced, _) = match tracer.trace_type_once::<T>(&samples) {
                Ok(traced) => traced,
                Err(Error::Custom(_)) => return Err(Failed::Refused),
                Err(_) => return Err(Failed::Untraceable),
            };
            format = Some(traced);
            for name in clears.get(round).into_iter().flatten() {
                tracer.check_incomplete_enum(name);
            }
        }
        match tracer.registry() {
            Ok(registry) => {
                let mut format = format.ok_or(Failed::Untraceable)?;
                format.normalize().map_err(|_| Failed::Untraceable)?;
                return Ok((shape(&format).ok_or(Failed::Untraceable)?, registry));
            }
            Err(Error::MissingVariants(names)) => clears.push(names),
            Err(_) => return Err(Failed::Untraceable),
        }
    }
    Err(Failed::Untraceable)
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
