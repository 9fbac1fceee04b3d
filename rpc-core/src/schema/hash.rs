//! Hashing shapes: named types are expanded, so that a change deep inside an argument changes
//! its method's hash; the Rust names of types are left out.

use std::collections::BTreeMap;

use super::shape::{ContainerShape, Named, Shape, VariantShape};
use super::{MethodSchema, ServiceSchema};

/// 64-bit FNV-1a, fed piece by piece.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
        self.bytes(&[0xff]);
    }
}

type Types = BTreeMap<String, ContainerShape>;

/// Most shapes (fields, items, named types expanded) one side of a method's hash writes: a
/// schema from elsewhere (a server's answer to `describe`) may name types that each name others
/// twice, which would expand exponentially, or types of millions of fields. A named type is
/// expanded again at each use, so a program's own types reach it too when they nest wide types
/// deep (four levels of 30 fields each: 810,000 shapes); past it, the rest of that side is
/// compared as "too large", and a change there is not caught (the README says so).
const MAX_SHAPES: usize = 100_000;

/// Most shapes [`bounded_fingerprint`] writes, over all the methods of a schema from elsewhere,
/// which may repeat a method that reaches [`MAX_SHAPES`] as often as its bytes allow.
const MAX_SCHEMA_SHAPES: usize = 1_000_000;

/// Most named types expanded inside one another: a schema from elsewhere may chain types deeper
/// than the stack holds.
const MAX_NESTING: usize = 256;

/// The names being expanded, so that a recursive type ends (it is written by its position in
/// the recursion), and how many more shapes the hash may write.
struct Open {
    names: Vec<String>,
    left: usize,
    /// A shape was written as too large: the hash stands for more than one structure.
    cut: bool,
    /// The work on names (of types, fields and variants: hashed, copied, compared with the open
    /// ones) is charged to `left` too, a shape per [`NAME_BYTES_PER_SHAPE`] bytes: a schema from
    /// elsewhere may have names of megabytes.
    charge_names: bool,
    /// A charge for names went past the bound: the hash is not the one the schema's own side
    /// computes (which charges none), so it is no answer at all.
    names_cut: bool,
}

/// Bytes of names worked on that count as one shape, for a schema from elsewhere.
const NAME_BYTES_PER_SHAPE: usize = 64;

impl Open {
    fn new(left: usize) -> Self {
        Self {
            names: Vec::new(),
            left,
            cut: false,
            charge_names: false,
            names_cut: false,
        }
    }

    /// Charges the work on `bytes` bytes of names, if they are charged; `false` if that is past
    /// the bound.
    fn charge(&mut self, bytes: usize) -> bool {
        if !self.charge_names {
            return true;
        }
        let cost = bytes / NAME_BYTES_PER_SHAPE;
        if cost >= self.left {
            self.left = 0;
            self.cut = true;
            self.names_cut = true;
            return false;
        }
        self.left -= cost;
        true
    }
}

/// Writes `shape` into `hash`, expanding named types, within the bounds of `open`: past them a
/// shape is written as too large (no schema a program derives comes near them).
fn write(hash: &mut Fnv, shape: &Shape, types: &Types, open: &mut Open) {
    if open.left == 0 {
        open.cut = true;
        hash.text("too large");
        return;
    }
    open.left -= 1;
    match shape {
        Shape::TypeName(name) => {
            // The names compared in full are those of the same length.
            let compared: usize = open
                .names
                .iter()
                .filter(|n| n.len() == name.len())
                .map(String::len)
                .sum();
            if !open.charge(name.len().saturating_add(compared)) {
                hash.text("too large");
                return;
            }
            if let Some(depth) = open.names.iter().position(|n| n == name) {
                hash.text(&format!("rec{depth}"));
                return;
            }
            if open.names.len() >= MAX_NESTING {
                open.cut = true;
                hash.text("too large");
                return;
            }
            match types.get(name) {
                Some(container) => {
                    open.names.push(name.clone());
                    write_container(hash, container, types, open);
                    open.names.pop();
                }
                // Untraced: known by its name only.
                None => hash.text(&format!("name:{name}")),
            }
        }
        Shape::Option(inner) => {
            hash.text("option");
            write(hash, inner, types, open);
        }
        Shape::Seq(inner) => {
            hash.text("seq");
            write(hash, inner, types, open);
        }
        Shape::Map { key, value } => {
            hash.text("map");
            write(hash, key, types, open);
            write(hash, value, types, open);
        }
        Shape::Tuple(items) => {
            hash.text(&format!("tuple{}", items.len()));
            for item in items {
                write(hash, item, types, open);
            }
        }
        Shape::TupleArray { content, size } => {
            hash.text(&format!("array{size}"));
            write(hash, content, types, open);
        }
        primitive => hash.text(&primitive.rust()),
    }
}

fn write_fields(hash: &mut Fnv, fields: &[Named<Shape>], types: &Types, open: &mut Open) {
    hash.text(&format!("fields{}", fields.len()));
    for field in fields {
        if !open.charge(field.name.len()) {
            hash.text("too large");
            return;
        }
        hash.text(&field.name);
        write(hash, &field.value, types, open);
    }
}

fn write_container(hash: &mut Fnv, container: &ContainerShape, types: &Types, open: &mut Open) {
    match container {
        ContainerShape::UnitStruct => hash.text("unit struct"),
        ContainerShape::NewTypeStruct(inner) => {
            hash.text("newtype");
            write(hash, inner, types, open);
        }
        ContainerShape::TupleStruct(items) => {
            hash.text(&format!("tuple struct{}", items.len()));
            for item in items {
                write(hash, item, types, open);
            }
        }
        ContainerShape::Struct(fields) => {
            hash.text("struct");
            write_fields(hash, fields, types, open);
        }
        ContainerShape::Enum(variants) => {
            hash.text(&format!("enum{}", variants.len()));
            for (index, variant) in variants {
                if !open.charge(variant.name.len()) {
                    hash.text("too large");
                    return;
                }
                hash.text(&format!("{index}:{}", variant.name));
                match &variant.value {
                    VariantShape::Unit => hash.text("unit"),
                    VariantShape::NewType(inner) => {
                        hash.text("newtype");
                        write(hash, inner, types, open);
                    }
                    VariantShape::Tuple(items) => {
                        hash.text(&format!("tuple{}", items.len()));
                        for item in items {
                            write(hash, item, types, open);
                        }
                    }
                    VariantShape::Struct(fields) => write_fields(hash, fields, types, open),
                }
            }
        }
    }
}

/// A hash of the structure of the named type `name`, expanded from `types`: equal for two
/// types that encode alike, whatever they and the types in them are called.
pub(super) fn structure(name: &str, types: &Types) -> u64 {
    structure_of(name, types).0
}

/// The structure's hash of the named type `name` of `types`, if nothing in it was cut short by
/// the hash's bounds (then the hash tells its structure from every other).
pub(super) fn whole_structure(name: &str, types: &Types) -> Option<u64> {
    let (hash, cut) = structure_of(name, types);
    (!cut).then_some(hash)
}

fn structure_of(name: &str, types: &Types) -> (u64, bool) {
    let mut hash = Fnv::new();
    let shape = Shape::TypeName(name.to_owned());
    let mut open = Open::new(MAX_SHAPES);
    write(&mut hash, &shape, types, &mut open);
    (hash.0, open.cut)
}

pub(super) fn method_hashes(method: &MethodSchema, types: &Types) -> (u64, u64) {
    hashes_within(method, types, &mut (2 * MAX_SHAPES), false)
}

/// The method's hashes, each side writing at most [`MAX_SHAPES`] shapes, and both at most
/// `budget`, which is left with what they did not write.
fn hashes_within(
    method: &MethodSchema,
    types: &Types,
    budget: &mut usize,
    charge_names: bool,
) -> (u64, u64) {
    // Each side has its own bound: a huge argument does not hide a change in the result.
    let mut open = Open::new(MAX_SHAPES.min(*budget));
    open.charge_names = charge_names;
    let mut args = Fnv::new();
    args.text(&method.kind);
    write(&mut args, &method.args_shape, types, &mut open);
    match &method.stream_arg {
        Some((_, _, item)) => {
            args.text("stream");
            write(&mut args, item, types, &mut open);
        }
        None => args.text("no stream"),
    }
    *budget -= MAX_SHAPES.min(*budget) - open.left;
    if open.names_cut {
        *budget = 0;
    }
    let mut open = Open::new(MAX_SHAPES.min(*budget));
    open.charge_names = charge_names;
    let mut result = Fnv::new();
    result.text(&method.kind);
    write(&mut result, &method.result_shape, types, &mut open);
    match &method.error {
        Some((_, error)) => {
            result.text("error");
            write(&mut result, error, types, &mut open);
        }
        None => result.text("no error"),
    }
    *budget -= MAX_SHAPES.min(*budget) - open.left;
    if open.names_cut {
        *budget = 0;
    }
    (args.0, result.0)
}

/// The fingerprint of `schema`: each method's hashes, within the bounds of each.
pub(super) fn fingerprint(schema: &ServiceSchema) -> u64 {
    let mut unbounded = usize::MAX;
    fingerprint_within(schema, &mut unbounded, false)
}

/// The fingerprint of `schema` if it takes at most [`MAX_SCHEMA_SHAPES`] shapes in all.
pub(super) fn bounded_fingerprint(schema: &ServiceSchema) -> Option<u64> {
    let mut budget = MAX_SCHEMA_SHAPES;
    let fingerprint = fingerprint_within(schema, &mut budget, true);
    (budget > 0).then_some(fingerprint)
}

/// The fingerprint of `schema`, writing at most `budget` shapes in all (then each method as
/// too large), and leaving in `budget` what it did not write; with `charge_names`, the work on
/// names counts too (see [`Open`]).
fn fingerprint_within(schema: &ServiceSchema, budget: &mut usize, charge_names: bool) -> u64 {
    let mut hash = Fnv::new();
    hash.text(&schema.service);
    // In the order of their ids, which do not depend on where the methods are written:
    // reordering a trait's methods leaves its fingerprint alone (a callback service's must
    // be equal on both sides).
    let mut methods: Vec<&MethodSchema> = schema.methods.iter().collect();
    methods.sort_by_key(|method| method.id);
    for method in methods {
        let (args, result) = hashes_within(method, &schema.types, budget, charge_names);
        hash.bytes(&method.id.to_le_bytes());
        hash.bytes(&args.to_le_bytes());
        hash.bytes(&result.to_le_bytes());
    }
    hash.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema with one method taking one value of the named type `arg`.
    fn taking(arg: &str, types: Types) -> ServiceSchema {
        ServiceSchema {
            service: "Test".into(),
            callbacks: None,
            methods: vec![MethodSchema {
                name: "m".into(),
                id: 1,
                kind: "call".into(),
                docs: String::new(),
                args: Vec::new(),
                args_shape: Shape::Tuple(vec![Shape::TypeName(arg.into())]),
                stream_arg: None,
                result: String::new(),
                result_shape: Shape::Unit,
                error: None,
            }],
            types,
            untraced: Vec::new(),
        }
    }

    fn name(name: String) -> Shape {
        Shape::TypeName(name)
    }

    /// 64 levels of types, each naming the next twice: 2^64 expansions unbounded.
    fn dag() -> Types {
        (0..64)
            .map(|i| {
                let next = if i == 63 {
                    Shape::U8
                } else {
                    name(format!("D{}", i + 1))
                };
                let fields = vec![Shape::U8, next.clone(), next];
                (format!("D{i}"), ContainerShape::TupleStruct(fields))
            })
            .collect()
    }

    /// An argument too large to hash in full hides no change of the result: each side has a
    /// bound of its own.
    #[test]
    fn a_huge_argument_hides_no_change_of_the_result() {
        let returning = |result: Shape| {
            let mut schema = taking("D0", dag());
            if let Some(method) = schema.methods.first_mut() {
                method.result_shape = result;
            }
            schema
        };
        let (small, large) = (returning(Shape::U8), returning(Shape::U16));
        let (args, result) = method_hashes(&small.methods[0], &small.types);
        let (same_args, other_result) = method_hashes(&large.methods[0], &large.types);
        assert_eq!(args, same_args);
        assert_ne!(result, other_result);
        assert_ne!(small.fingerprint(), large.fingerprint());
    }

    /// A schema from elsewhere that repeats a method too large to hash in full, ten thousand
    /// times, is fingerprinted within one bound for the whole schema, or not at all
    /// (unbounded, it writes each method's hundred thousand shapes on each side); a schema
    /// within the bound gets its whole fingerprint.
    #[test]
    fn a_hostile_schema_is_fingerprinted_within_one_bound() {
        let repeated = |first: Shape| {
            let mut schema = taking("D0", dag());
            let method = schema.methods[0].clone();
            schema.methods = (0..10_000)
                .map(|i| MethodSchema {
                    id: i,
                    ..method.clone()
                })
                .collect();
            schema.methods[0].result_shape = first;
            schema
        };
        assert_eq!(bounded_fingerprint(&repeated(Shape::U8)), None);
        let small = taking("D63", dag());
        assert_eq!(bounded_fingerprint(&small), Some(fingerprint(&small)));
    }

    /// A schema from elsewhere whose types, 18 levels of each naming the next twice, end in a
    /// type of a name of a megabyte, in ten methods: fingerprinted within its bound, or not at
    /// all. Before, only shapes counted: each of the 2^18 uses of the long name hashed and
    /// copied the whole of it, for hours.
    #[test]
    fn long_names_count_against_the_bound_of_a_hostile_schema() {
        let long = "L".repeat(1 << 20);
        let types: Types = (0..18)
            .map(|i| {
                let next = if i == 17 {
                    name(long.clone())
                } else {
                    name(format!("D{}", i + 1))
                };
                (
                    format!("D{i}"),
                    ContainerShape::TupleStruct(vec![next.clone(), next]),
                )
            })
            .collect();
        let mut schema = taking("D0", types);
        let method = schema.methods[0].clone();
        schema.methods = (0..10)
            .map(|i| MethodSchema {
                id: i,
                ..method.clone()
            })
            .collect();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(bounded_fingerprint(&schema));
        });
        let fingerprint = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the fingerprint within a minute");
        assert_eq!(fingerprint, None);
    }

    /// As above, with the long name a field's, then a variant's (each hashed at every use).
    #[test]
    fn long_field_and_variant_names_count_against_the_bound_of_a_hostile_schema() {
        let long = "L".repeat(1 << 20);
        let last = [
            ContainerShape::Struct(vec![Named {
                name: long.clone(),
                value: Shape::U8,
            }]),
            ContainerShape::Enum(
                [(
                    0,
                    Named {
                        name: long,
                        value: VariantShape::Unit,
                    },
                )]
                .into_iter()
                .collect(),
            ),
        ];
        for last in last {
            let mut types: Types = (0..17)
                .map(|i| {
                    let next = name(format!("D{}", i + 1));
                    (
                        format!("D{i}"),
                        ContainerShape::TupleStruct(vec![next.clone(), next]),
                    )
                })
                .collect();
            types.insert("D17".into(), last);
            let mut schema = taking("D0", types);
            let method = schema.methods[0].clone();
            schema.methods = (0..10)
                .map(|i| MethodSchema {
                    id: i,
                    ..method.clone()
                })
                .collect();
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done.send(bounded_fingerprint(&schema));
            });
            let fingerprint = finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the fingerprint within a minute");
            assert_eq!(fingerprint, None);
        }
    }

    /// Schemas from elsewhere that would need more stack than there is (100,000 named types,
    /// each holding the next) or exponential time (64 levels of types naming the next one
    /// twice) hash within bounds, and what they start with still counts.
    #[test]
    fn hostile_schemas_hash_within_bounds() {
        let chain = |first: Shape| -> Types {
            (0..100_000)
                .map(|i| {
                    let inner = if i == 0 {
                        first.clone()
                    } else {
                        name(format!("T{}", i + 1))
                    };
                    let fields = vec![inner, name(format!("T{}", i + 1))];
                    (format!("T{i}"), ContainerShape::TupleStruct(fields))
                })
                .collect()
        };
        let deep = fingerprint(&taking("T0", chain(Shape::U8)));
        let other = fingerprint(&taking("T0", chain(Shape::U16)));
        assert_ne!(deep, other);
        let dag = |leaf: Shape| -> Types {
            (0..64)
                .map(|i| {
                    let next = if i == 63 {
                        leaf.clone()
                    } else {
                        name(format!("D{}", i + 1))
                    };
                    let fields = vec![Shape::U8, next.clone(), next];
                    (format!("D{i}"), ContainerShape::TupleStruct(fields))
                })
                .collect()
        };
        let wide = fingerprint(&taking("D0", dag(Shape::U8)));
        let mut changed = dag(Shape::U8);
        changed.insert(
            "D0".into(),
            ContainerShape::TupleStruct(vec![Shape::U16, name("D1".into()), name("D1".into())]),
        );
        assert_ne!(wide, fingerprint(&taking("D0", changed)));
    }
}
