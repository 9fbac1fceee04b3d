//! Questions about formats that both directions ask: names, zero size, how maps look in JSON.

use std::collections::HashMap;

use serde_json::Value;
use serde_reflection::{ContainerFormat, Format, Registry, VariantFormat};

use super::MAX_DEPTH;

/// Writes a format as a Rust-like type name: `i64`, `String`, `Option<Vec<Point>>`,
/// `Map<String, u32>`, `(i32, bool)`, `[u8; 4]`, `bytes`; a named type by its name.
pub fn type_name(format: &Format) -> String {
    let mut out = String::new();
    write_type_name(&mut out, format);
    out
}

fn write_type_name(out: &mut String, format: &Format) {
    let primitive = match format {
        Format::Variable(_) => "?",
        Format::TypeName(name) => name,
        Format::Unit => "()",
        Format::Bool => "bool",
        Format::I8 => "i8",
        Format::I16 => "i16",
        Format::I32 => "i32",
        Format::I64 => "i64",
        Format::I128 => "i128",
        Format::U8 => "u8",
        Format::U16 => "u16",
        Format::U32 => "u32",
        Format::U64 => "u64",
        Format::U128 => "u128",
        Format::F32 => "f32",
        Format::F64 => "f64",
        Format::Char => "char",
        Format::Str => "String",
        Format::Bytes => "bytes",
        Format::Option(inner) => return wrap(out, "Option<", &[inner], ">"),
        Format::Seq(inner) => return wrap(out, "Vec<", &[inner], ">"),
        Format::Map { key, value } => return wrap(out, "Map<", &[key, value], ">"),
        Format::Tuple(formats) => {
            let refs: Vec<&Format> = formats.iter().collect();
            let close = if refs.len() == 1 { ",)" } else { ")" };
            return wrap(out, "(", &refs, close);
        }
        Format::TupleArray { content, size } => {
            out.push('[');
            write_type_name(out, content);
            out.push_str(&format!("; {size}]"));
            return;
        }
    };
    out.push_str(primitive);
}

fn wrap(out: &mut String, open: &str, inner: &[&Format], close: &str) {
    out.push_str(open);
    for (i, format) in inner.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_type_name(out, format);
    }
    out.push_str(close);
}

/// How a named type is described in errors: `struct Point`, `enum Shape`, ...
pub(super) fn container_name(name: &str, container: &ContainerFormat) -> String {
    let kind = match container {
        ContainerFormat::UnitStruct => "unit struct",
        ContainerFormat::NewTypeStruct(_) => "newtype struct",
        ContainerFormat::TupleStruct(_) => "tuple struct",
        ContainerFormat::Struct(_) => "struct",
        ContainerFormat::Enum(_) => "enum",
    };
    format!("{kind} {name}")
}

/// The JSON given, as errors show it: compact, and cut short past 60 characters.
pub(super) fn given(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Follows named newtype structs down to the format their JSON takes, for the choices that
/// depend on it (how a command-line word or a map key is read). Stops at anything else, at an
/// unknown name, or after [`MAX_DEPTH`] steps.
pub(super) fn json_shape<'a>(mut format: &'a Format, registry: &'a Registry) -> &'a Format {
    for _ in 0..MAX_DEPTH {
        let Format::TypeName(name) = format else {
            return format;
        };
        match registry.get(name) {
            Some(ContainerFormat::NewTypeStruct(inner)) => format = inner,
            _ => return format,
        }
    }
    format
}

/// Whether a map with keys of this format is written as a JSON object: strings, chars,
/// integers and enums of unit variants have a natural string form.
pub(super) fn keys_are_strings(key: &Format, registry: &Registry) -> bool {
    match json_shape(key, registry) {
        Format::Str
        | Format::Char
        | Format::I8
        | Format::I16
        | Format::I32
        | Format::I64
        | Format::I128
        | Format::U8
        | Format::U16
        | Format::U32
        | Format::U64
        | Format::U128 => true,
        Format::TypeName(name) => match registry.get(name) {
            Some(ContainerFormat::Enum(variants)) => variants
                .values()
                .all(|variant| matches!(variant.value, VariantFormat::Unit)),
            _ => false,
        },
        _ => false,
    }
}

/// The answers of [`ShapeMemo::is_zero_sized`] and [`keys_are_strings`] for the formats of one
/// decode, by the address of each format node (the registry and the root format are borrowed
/// for the whole decode, so a node keeps its address and no address is reused): a registry
/// from a peer may hold types that take thousands of steps to look through, and a reply may ask
/// about the same one once for each of its bytes (every empty sequence of it). Holds at most two
/// answers per format node of the registry and the root.
#[derive(Default)]
pub(super) struct ShapeMemo {
    zero_sized: HashMap<usize, bool>,
    string_keys: HashMap<usize, bool>,
}

/// The memo's key for a format node.
fn node(format: &Format) -> usize {
    std::ptr::from_ref(format) as usize
}

impl ShapeMemo {
    /// Whether every value of this format encodes to zero bytes (`()`, unit structs, empty
    /// tuples and arrays of such). Every other format takes at least one byte per value, which
    /// bounds the length of a sequence by the input. Cycles, unknown names, and shapes too large
    /// to look through (a registry from a peer could nest types exponentially) count as not
    /// zero-sized, which only makes the length check stricter. Each format node is looked
    /// through once; an answer cut short by those limits is not kept.
    pub(super) fn is_zero_sized(&mut self, format: &Format, registry: &Registry) -> bool {
        let mut walk = Walk {
            steps: 0,
            cut_short: false,
        };
        self.zero_sized(format, registry, 0, &mut walk)
    }

    /// [`keys_are_strings`], each format node looked through once.
    pub(super) fn keys_are_strings(&mut self, key: &Format, registry: &Registry) -> bool {
        *self
            .string_keys
            .entry(node(key))
            .or_insert_with(|| keys_are_strings(key, registry))
    }

    fn zero_sized(
        &mut self,
        format: &Format,
        registry: &Registry,
        depth: usize,
        walk: &mut Walk,
    ) -> bool {
        const MAX_STEPS: usize = 4096;
        if let Some(&known) = self.zero_sized.get(&node(format)) {
            return known;
        }
        walk.steps += 1;
        if depth > MAX_DEPTH || walk.steps > MAX_STEPS {
            walk.cut_short = true;
            return false;
        }
        let depth = depth + 1;
        // Whether this node's own walk is cut short: the walks of the nodes before it may have
        // been, without making its answer less than whole.
        let before = std::mem::replace(&mut walk.cut_short, false);
        let answer = match format {
            Format::Unit => true,
            Format::Tuple(formats) => self.all_zero_sized(formats, registry, depth, walk),
            Format::TupleArray { content, size } => {
                *size == 0 || self.zero_sized(content, registry, depth, walk)
            }
            Format::TypeName(name) => match registry.get(name) {
                Some(ContainerFormat::UnitStruct) => true,
                Some(ContainerFormat::NewTypeStruct(inner)) => {
                    self.zero_sized(inner, registry, depth, walk)
                }
                Some(ContainerFormat::TupleStruct(formats)) => {
                    self.all_zero_sized(formats, registry, depth, walk)
                }
                Some(ContainerFormat::Struct(fields)) => {
                    let formats = fields.iter().map(|field| &field.value);
                    self.all_zero_sized(formats, registry, depth, walk)
                }
                Some(ContainerFormat::Enum(_)) | None => false,
            },
            _ => false,
        };
        if !walk.cut_short {
            self.zero_sized.insert(node(format), answer);
        }
        walk.cut_short |= before;
        answer
    }

    fn all_zero_sized<'f>(
        &mut self,
        formats: impl IntoIterator<Item = &'f Format>,
        registry: &Registry,
        depth: usize,
        walk: &mut Walk,
    ) -> bool {
        formats
            .into_iter()
            .all(|format| self.zero_sized(format, registry, depth, walk))
    }
}

/// One question to [`ShapeMemo::is_zero_sized`]: the steps taken, and whether a limit cut the
/// walk of the current node short.
struct Walk {
    steps: usize,
    cut_short: bool,
}

/// What a JSON value should have been, written out only when an error needs it.
#[derive(Clone, Copy)]
pub(super) enum Expected<'a> {
    Format(&'a Format),
    Unit,
    Struct(&'a str),
    TupleStruct(&'a str),
    UnitStruct(&'a str),
    Enum(&'a str),
    Variant(&'a str, &'a str),
    UnitVariant(&'a str, &'a str),
    VariantContent(&'a str, &'a str),
}

impl Expected<'_> {
    #[inline(never)]
    pub(super) fn text(self) -> String {
        match self {
            Expected::Format(format) => type_name(format),
            Expected::Unit => "() (null)".to_owned(),
            Expected::Struct(name) => format!("struct {name}"),
            Expected::TupleStruct(name) => name.to_owned(),
            Expected::UnitStruct(name) => format!("unit struct {name} (null)"),
            Expected::Enum(name) => format!("enum {name}"),
            Expected::Variant(variant, name) => format!("variant {variant} of enum {name}"),
            Expected::UnitVariant(variant, name) => {
                format!("unit variant {variant} of enum {name} (null)")
            }
            Expected::VariantContent(variant, name) => {
                format!("{{\"{variant}\": ...}} (variant {variant} of enum {name} has content)")
            }
        }
    }
}
