//! The serde shape of a type: what postcard writes for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The shape of a value (serde's data model), as traced from its `Deserialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Shape {
    /// A struct or enum, by its serde name: see [`super::ServiceSchema::types`].
    TypeName(String),
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string.
    Str,
    /// A byte buffer.
    Bytes,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence: `Vec<T>` and the like.
    Seq(Box<Shape>),
    /// A map.
    #[serde(rename_all = "UPPERCASE")]
    Map {
        /// The keys' shape.
        key: Box<Shape>,
        /// The values' shape.
        value: Box<Shape>,
    },
    /// A tuple.
    Tuple(Vec<Shape>),
    /// An array of `size` items: `[T; N]`.
    #[serde(rename_all = "UPPERCASE")]
    TupleArray {
        /// The items' shape.
        content: Box<Shape>,
        /// How many.
        size: usize,
    },
}

/// The shape of a named type: a struct or an enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerShape {
    /// `struct A;`
    UnitStruct,
    /// `struct A(T);`
    NewTypeStruct(Box<Shape>),
    /// `struct A(T, U);`
    TupleStruct(Vec<Shape>),
    /// `struct A { a: T }`
    Struct(Vec<Named<Shape>>),
    /// An enum: its variants by index.
    Enum(BTreeMap<u32, Named<VariantShape>>),
}

impl ContainerShape {
    /// Renames the named types `renames` holds, wherever this type refers to them.
    pub(super) fn rename(&mut self, renames: &BTreeMap<String, String>) {
        let fields = |fields: &mut Vec<Named<Shape>>| {
            fields.iter_mut().for_each(|f| f.value.rename(renames));
        };
        match self {
            ContainerShape::UnitStruct => {}
            ContainerShape::NewTypeStruct(inner) => inner.rename(renames),
            ContainerShape::TupleStruct(items) => {
                items.iter_mut().for_each(|item| item.rename(renames));
            }
            ContainerShape::Struct(named) => fields(named),
            ContainerShape::Enum(variants) => {
                for variant in variants.values_mut() {
                    match &mut variant.value {
                        VariantShape::Unit => {}
                        VariantShape::NewType(inner) => inner.rename(renames),
                        VariantShape::Tuple(items) => {
                            items.iter_mut().for_each(|item| item.rename(renames));
                        }
                        VariantShape::Struct(named) => fields(named),
                    }
                }
            }
        }
    }
}

/// The shape of an enum variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VariantShape {
    /// `A`
    Unit,
    /// `A(T)`
    NewType(Box<Shape>),
    /// `A(T, U)`
    Tuple(Vec<Shape>),
    /// `A { a: T }`
    Struct(Vec<Named<Shape>>),
}

/// A named field or variant; serialized as a map of one entry, `{name: value}`, as
/// serde-reflection writes it, so that a schema reads as its formats do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named<T> {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub value: T,
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(&self.name, &self.value)?;
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct One<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for One<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of one entry")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Named<T>, A::Error> {
                let (name, value) = map
                    .next_entry()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                if map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {
                    return Err(serde::de::Error::invalid_length(2, &self));
                }
                Ok(Named { name, value })
            }
        }
        deserializer.deserialize_map(One(std::marker::PhantomData))
    }
}

impl Shape {
    /// Renames the named types `renames` holds, wherever this shape refers to them.
    pub(super) fn rename(&mut self, renames: &BTreeMap<String, String>) {
        match self {
            Shape::TypeName(name) => {
                if let Some(new) = renames.get(name) {
                    new.clone_into(name);
                }
            }
            Shape::Option(inner) | Shape::Seq(inner) | Shape::TupleArray { content: inner, .. } => {
                inner.rename(renames);
            }
            Shape::Map { key, value } => {
                key.rename(renames);
                value.rename(renames);
            }
            Shape::Tuple(items) => items.iter_mut().for_each(|item| item.rename(renames)),
            _ => {}
        }
    }

    /// This shape as written in Rust, roughly: `u32`, `Vec<Point>`, `(String, bool)`.
    pub fn rust(&self) -> String {
        match self {
            Shape::TypeName(name) => name.clone(),
            Shape::Unit => "()".into(),
            Shape::Bool => "bool".into(),
            Shape::I8 => "i8".into(),
            Shape::I16 => "i16".into(),
            Shape::I32 => "i32".into(),
            Shape::I64 => "i64".into(),
            Shape::I128 => "i128".into(),
            Shape::U8 => "u8".into(),
            Shape::U16 => "u16".into(),
            Shape::U32 => "u32".into(),
            Shape::U64 => "u64".into(),
            Shape::U128 => "u128".into(),
            Shape::F32 => "f32".into(),
            Shape::F64 => "f64".into(),
            Shape::Char => "char".into(),
            Shape::Str => "String".into(),
            Shape::Bytes => "bytes".into(),
            Shape::Option(inner) => format!("Option<{}>", inner.rust()),
            Shape::Seq(inner) => format!("Vec<{}>", inner.rust()),
            Shape::Map { key, value } => format!("Map<{}, {}>", key.rust(), value.rust()),
            Shape::Tuple(items) => {
                let items: Vec<String> = items.iter().map(Shape::rust).collect();
                format!("({})", items.join(", "))
            }
            Shape::TupleArray { content, size } => format!("[{}; {size}]", content.rust()),
        }
    }
}
