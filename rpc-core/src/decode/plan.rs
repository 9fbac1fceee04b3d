//! Which methods' values may skip the guard.
//!
//! The guard ([`super::from_slice`]) exists for types whose values can nest without bound or
//! carry a length that serde would reserve room for: recursive types, sequences and maps. A type
//! with none of these nests at most as deep as its definition, and takes from the input only
//! what each field reads (strings and byte buffers are sized by their bytes); if that depth is
//! within the limit, the guard could never refuse one of its values, so decoding it with
//! postcard alone gives the same result for less (a tenth of the instructions for `(u32, u32)`).
//!
//! The depth is worked out from the service's traced schema, once per connection, as an upper
//! bound of the guard's count: every struct, tuple, enum, variant with fields and `Some` counts
//! one level. A type that was not traced counts as unbounded.

use std::collections::BTreeSet;

use super::DecodeLimits;
use crate::schema::{ContainerShape, MethodSchema, ServiceSchema, Shape, VariantShape};
use crate::service::ServiceDescriptor;

/// Which values of a method a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The argument tuple, decoded by the server.
    Args,
    /// The items of the stream a method takes from the client, decoded by the server.
    Uploads,
    /// The result (or each item of a result stream) and the typed error, decoded by the client.
    Results,
}

/// The limits the values on one side of each method of a service decode under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Bit `i` for `descriptor.methods[i]` (the first 64): its values never nest deeper than
    /// the limit and hold no sequence or map.
    plain: u64,
    limits: DecodeLimits,
}

impl Plan {
    /// The plan of `descriptor`'s values on `side` under `limits`.
    pub(crate) fn new(descriptor: &ServiceDescriptor, side: Side, limits: DecodeLimits) -> Self {
        let schema = descriptor.schema();
        let mut plain = 0;
        for (i, method) in descriptor.methods.iter().enumerate().take(64) {
            let Some(traced) = schema.methods.iter().find(|m| m.id == method.id) else {
                continue;
            };
            if depth_of(schema, traced, side).is_some_and(|depth| depth <= limits.max_depth) {
                plain |= 1 << i;
            }
        }
        Self { plain, limits }
    }

    /// The limits of the values of `descriptor.methods[index]`.
    pub(crate) fn at(&self, index: usize) -> DecodeLimits {
        if index < 64 && self.plain & (1 << index) != 0 {
            self.limits.plain()
        } else {
            self.limits
        }
    }

    /// The limits of the values of the method of `descriptor` with wire id `id`.
    pub(crate) fn of(&self, descriptor: &ServiceDescriptor, id: u32) -> DecodeLimits {
        match descriptor.methods.iter().position(|m| m.id == id) {
            Some(index) => self.at(index),
            None => self.limits,
        }
    }
}

/// The deepest the values of `method` on `side` nest, if bounded and free of sequences and maps.
fn depth_of(schema: &ServiceSchema, method: &MethodSchema, side: Side) -> Option<u32> {
    let mut depth = Depth {
        schema,
        open: BTreeSet::new(),
    };
    match side {
        Side::Args => depth.of(&method.args_shape),
        Side::Uploads => depth.of(&method.stream_arg.as_ref()?.2),
        Side::Results => {
            let error = match &method.error {
                Some((_, shape)) => depth.of(shape)?,
                None => 0,
            };
            Some(depth.of(&method.result_shape)?.max(error))
        }
    }
}

/// Walks shapes; `open` holds the named types being walked, to find recursion.
struct Depth<'a> {
    schema: &'a ServiceSchema,
    open: BTreeSet<&'a str>,
}

impl<'a> Depth<'a> {
    fn of(&mut self, shape: &'a Shape) -> Option<u32> {
        match shape {
            Shape::Unit
            | Shape::Bool
            | Shape::I8
            | Shape::I16
            | Shape::I32
            | Shape::I64
            | Shape::I128
            | Shape::U8
            | Shape::U16
            | Shape::U32
            | Shape::U64
            | Shape::U128
            | Shape::F32
            | Shape::F64
            | Shape::Char
            | Shape::Str
            | Shape::Bytes => Some(0),
            Shape::Seq(_) | Shape::Map { .. } => None,
            Shape::Option(inner) | Shape::TupleArray { content: inner, .. } => {
                Some(self.of(inner)? + 1)
            }
            Shape::Tuple(items) => Some(self.deepest(items.iter())? + 1),
            Shape::TypeName(name) => self.named(name),
        }
    }

    fn deepest(&mut self, shapes: impl Iterator<Item = &'a Shape>) -> Option<u32> {
        let mut deepest = 0;
        for shape in shapes {
            deepest = deepest.max(self.of(shape)?);
        }
        Some(deepest)
    }

    fn named(&mut self, name: &'a str) -> Option<u32> {
        // A name that was not traced (or that two types share) may be any type.
        if self.schema.untraced.iter().any(|untraced| untraced == name) {
            return None;
        }
        let container = self.schema.types.get(name)?;
        if !self.open.insert(name) {
            return None;
        }
        let depth = match container {
            ContainerShape::UnitStruct => Some(1),
            ContainerShape::NewTypeStruct(inner) => self.of(inner).map(|d| d + 1),
            ContainerShape::TupleStruct(fields) => self.deepest(fields.iter()).map(|d| d + 1),
            ContainerShape::Struct(fields) => {
                self.deepest(fields.iter().map(|f| &f.value)).map(|d| d + 1)
            }
            ContainerShape::Enum(variants) => {
                let mut deepest = Some(0);
                for variant in variants.values() {
                    let inner = match &variant.value {
                        VariantShape::Unit => Some(0),
                        VariantShape::NewType(inner) => self.of(inner),
                        VariantShape::Tuple(fields) => self.deepest(fields.iter()),
                        VariantShape::Struct(fields) => {
                            self.deepest(fields.iter().map(|f| &f.value))
                        }
                    };
                    deepest = deepest.zip(inner).map(|(a, b)| a.max(b + 1));
                }
                deepest.map(|d| d + 1)
            }
        };
        self.open.remove(name);
        depth
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::schema::Named;

    fn named<T>(name: &str, value: T) -> Named<T> {
        Named {
            name: name.into(),
            value,
        }
    }

    fn name(name: &str) -> Shape {
        Shape::TypeName(name.into())
    }

    /// A schema whose types are a point, a shape enum, a tree that holds itself, a list and
    /// a type that was not traced.
    fn schema() -> ServiceSchema {
        let types = BTreeMap::from([
            (
                "Point".to_string(),
                ContainerShape::Struct(vec![named("x", Shape::I32), named("y", Shape::I32)]),
            ),
            (
                "Shape".to_string(),
                ContainerShape::Enum(BTreeMap::from([
                    (0, named("Empty", VariantShape::Unit)),
                    (
                        1,
                        named("Dot", VariantShape::NewType(Box::new(name("Point")))),
                    ),
                    (
                        2,
                        named(
                            "Line",
                            VariantShape::Tuple(vec![name("Point"), name("Point")]),
                        ),
                    ),
                ])),
            ),
            (
                "Tree".to_string(),
                ContainerShape::Enum(BTreeMap::from([
                    (0, named("Leaf", VariantShape::Unit)),
                    (
                        1,
                        named("Node", VariantShape::NewType(Box::new(name("Tree")))),
                    ),
                ])),
            ),
            (
                "List".to_string(),
                ContainerShape::NewTypeStruct(Box::new(Shape::Seq(Box::new(Shape::U8)))),
            ),
        ]);
        ServiceSchema {
            service: "Test".into(),
            callbacks: None,
            methods: Vec::new(),
            types,
            untraced: vec!["Checked".into()],
        }
    }

    fn method(args: Shape, result: Shape, error: Option<Shape>) -> MethodSchema {
        MethodSchema {
            name: "m".into(),
            id: 1,
            kind: "call".into(),
            docs: String::new(),
            args: Vec::new(),
            args_shape: args,
            stream_arg: None,
            result: String::new(),
            result_shape: result,
            error: error.map(|shape| ("E".to_string(), shape)),
        }
    }

    fn args(shape: Shape) -> Option<u32> {
        depth_of(&schema(), &method(shape, Shape::Unit, None), Side::Args)
    }

    #[test]
    fn scalars_strings_and_bytes_are_flat_and_each_tuple_struct_or_option_one_level() {
        assert_eq!(args(Shape::U64), Some(0));
        assert_eq!(args(Shape::Str), Some(0));
        assert_eq!(args(Shape::Bytes), Some(0));
        assert_eq!(args(Shape::Tuple(vec![Shape::U32, Shape::U32])), Some(1));
        let option = Shape::Option(Box::new(Shape::U8));
        assert_eq!(args(Shape::Tuple(vec![option])), Some(2));
        assert_eq!(args(Shape::Tuple(vec![name("Point")])), Some(2));
        // The enum, the variant's fields, the point.
        assert_eq!(args(Shape::Tuple(vec![name("Shape")])), Some(4));
    }

    #[test]
    fn sequences_maps_recursion_and_untraced_types_are_not_plain() {
        assert_eq!(args(Shape::Seq(Box::new(Shape::U8))), None);
        let map = Shape::Map {
            key: Box::new(Shape::U8),
            value: Box::new(Shape::U8),
        };
        assert_eq!(args(Shape::Tuple(vec![Shape::U8, map])), None);
        assert_eq!(args(Shape::Tuple(vec![name("Tree")])), None);
        assert_eq!(args(Shape::Tuple(vec![name("List")])), None);
        assert_eq!(args(Shape::Tuple(vec![name("Checked")])), None);
    }

    /// Two types of one serde name, traced from their `Deserialize`s: neither is taken for the
    /// other. A recursive enum must not be planned as flat because a flat struct of its name
    /// was traced after it (its values would decode unguarded, as deep as a frame holds), and
    /// the flat struct, told apart by its structure, is planned as what it is.
    #[test]
    fn two_types_of_one_name_are_not_planned_as_either() {
        mod a {
            // Only decoded, through its `Deserialize`: its fields are never read.
            #[allow(dead_code)]
            #[derive(serde::Deserialize)]
            pub(super) enum Node {
                Leaf,
                Next(Box<Node>),
            }
        }
        mod b {
            #[derive(serde::Deserialize)]
            pub(super) struct Node {
                _x: u32,
            }
        }
        let mut builder = crate::schema::SchemaBuilder::new("Test", None);
        let recursive = Shape::Tuple(vec![builder.shape::<a::Node>("a::Node")]);
        let flat = Shape::Tuple(vec![builder.shape::<b::Node>("b::Node")]);
        let schema = builder.finish();
        let depth = |shape: &Shape| {
            depth_of(
                &schema,
                &method(shape.clone(), Shape::Unit, None),
                Side::Args,
            )
        };
        assert_eq!(depth(&recursive), None, "{schema:?}");
        assert_eq!(depth(&flat), Some(2), "{schema:?}");
    }

    #[test]
    fn a_type_used_twice_side_by_side_is_not_taken_for_recursion() {
        let twice = Shape::Tuple(vec![name("Point"), name("Point")]);
        assert_eq!(args(twice), Some(2));
    }

    #[test]
    fn results_count_the_typed_error_too() {
        let schema = schema();
        let plain = method(Shape::Unit, Shape::U32, Some(name("Point")));
        assert_eq!(depth_of(&schema, &plain, Side::Results), Some(1));
        let listed = method(Shape::Unit, Shape::U32, Some(name("List")));
        assert_eq!(depth_of(&schema, &listed, Side::Results), None);
    }

    #[test]
    fn uploads_are_the_items_of_the_stream_argument_if_there_is_one() {
        let schema = schema();
        let mut upload = method(Shape::Unit, Shape::U32, None);
        assert_eq!(depth_of(&schema, &upload, Side::Uploads), None, "no stream");
        upload.stream_arg = Some(("points".into(), "Point".into(), name("Point")));
        assert_eq!(depth_of(&schema, &upload, Side::Uploads), Some(1));
        upload.stream_arg = Some(("trees".into(), "Tree".into(), name("Tree")));
        assert_eq!(depth_of(&schema, &upload, Side::Uploads), None);
    }
}
