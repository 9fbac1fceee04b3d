//! Postcard to JSON. The bytes come from a peer: nothing here trusts them.
//!
//! As in the encoder, the functions on the recursive path stay small so that [`MAX_DEPTH`]
//! levels fit in a thread's stack even in a debug build.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

use super::number::{f32_to_json, float_to_json, Int, IntType};
use super::path::Path;
use super::shape::{container_name, ShapeMemo};
use super::{CodecError, MAX_DEPTH, MAX_VALUES, MAX_ZERO_SIZED_ELEMENTS};

/// Most values room is reserved for at once in a sequence or map: beyond it, the vector grows
/// as values come.
const RESERVE_MAX: usize = 1024;

/// Reads values from the front of its input, tracking the path for errors.
pub(super) struct Decoder<'a, 'b> {
    registry: &'a Registry,
    input: &'b [u8],
    path: Path,
    depth: usize,
    /// How many more values may be produced; see [`value_budget`].
    budget: usize,
    start_len: usize,
    /// What the registry's named types are like, found out once.
    shapes: ShapeMemo,
}

/// How many values (every struct, field, element, byte of a byte buffer, ...) decoding `len`
/// bytes may produce: 8 per byte and 65,536 more, and never more than [`MAX_VALUES`]. Values
/// that take no bytes (`()`, unit structs), or a hostile registry's types nested hundreds deep
/// around a byte, could otherwise multiply without bound; real values stay below 8 per byte
/// unless they hold many empty ones. A name a value repeats (a field's key, a variant's name)
/// counts one more value per [`NAME_BYTES_PER_VALUE`] bytes of it: a registry's names are as
/// long as the peer likes, and each 1-byte variant would copy one.
pub(super) fn value_budget(len: usize) -> usize {
    len.saturating_mul(8)
        .saturating_add(1 << 16)
        .min(MAX_VALUES)
}

/// Bytes of a repeated name that count as one value against [`value_budget`].
const NAME_BYTES_PER_VALUE: usize = 16;

impl<'a, 'b> Decoder<'a, 'b> {
    pub(super) fn new(registry: &'a Registry, input: &'b [u8], path: &str) -> Self {
        Decoder {
            registry,
            input,
            path: Path::new(path),
            depth: 0,
            budget: value_budget(input.len()),
            start_len: input.len(),
            shapes: ShapeMemo::default(),
        }
    }

    /// The input not read yet.
    pub(super) fn rest(&self) -> &'b [u8] {
        self.input
    }

    /// Spends `values` of the budget.
    fn spend(&mut self, values: usize) -> Result<(), CodecError> {
        self.budget = match self.budget.checked_sub(values) {
            Some(budget) => budget,
            None => return Err(self.too_many_values()),
        };
        Ok(())
    }

    /// Spends the budget for a copy of `name` in the output.
    fn spend_name(&mut self, name: &str) -> Result<(), CodecError> {
        self.spend(name.len() / NAME_BYTES_PER_VALUE)
    }

    /// Reads a value of shape `format` at the current path.
    pub(super) fn value(&mut self, format: &Format) -> Result<Value, CodecError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.spend(1)?;
        self.depth += 1;
        let result = self.dispatch(format);
        self.depth -= 1;
        result
    }

    #[inline(never)]
    fn dispatch(&mut self, format: &Format) -> Result<Value, CodecError> {
        match format {
            Format::TypeName(name) => self.container(name),
            Format::Option(inner) => match self.byte()? {
                0 => Ok(Value::Null),
                1 => self.value(inner),
                byte => Err(self.bad_tag("Option tag", byte)),
            },
            Format::Seq(inner) => {
                let zero_sized = self.shapes.is_zero_sized(inner, self.registry);
                let len = self.element_count(zero_sized)?;
                self.elements(len, inner)
            }
            Format::Map { key, value } => self.map(key, value),
            Format::Tuple(formats) => self.tuple(formats),
            Format::TupleArray { content, size } => self.elements(*size, content),
            scalar => self.scalar(scalar),
        }
    }

    /// Every format that holds no other format.
    #[inline(never)]
    fn scalar(&mut self, format: &Format) -> Result<Value, CodecError> {
        if let Some(ty) = IntType::of(format) {
            return self.integer(ty);
        }
        Ok(match format {
            Format::Unit => Value::Null,
            Format::Bool => match self.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => return Err(self.bad_tag("bool", byte)),
            },
            Format::F32 => f32_to_json(f32::from_le_bytes(self.array()?)),
            Format::F64 => float_to_json(f64::from_le_bytes(self.array()?)),
            Format::Char => {
                let text = self.string("char")?;
                let mut chars = text.chars();
                if let (Some(_), None) = (chars.next(), chars.next()) {
                    Value::String(text)
                } else {
                    return Err(CodecError::BadChar {
                        path: self.path.text(),
                        given: Value::String(text).to_string(),
                    });
                }
            }
            Format::Str => Value::String(self.string("String")?),
            Format::Bytes => {
                let len = self.element_count(false)?;
                self.spend(len)?;
                let bytes = self.take(len)?;
                Value::Array(bytes.iter().map(|b| Value::from(*b)).collect())
            }
            _ => return Err(self.unresolved()),
        })
    }

    #[inline(never)]
    fn container(&mut self, name: &str) -> Result<Value, CodecError> {
        let registry = self.registry;
        match registry.get(name) {
            None => Err(self.unknown_type(name)),
            Some(ContainerFormat::UnitStruct) => Ok(Value::Null),
            Some(ContainerFormat::NewTypeStruct(inner)) => self.value(inner),
            Some(ContainerFormat::TupleStruct(formats)) => self.tuple(formats),
            Some(ContainerFormat::Struct(fields)) => self.fields(fields),
            Some(container @ ContainerFormat::Enum(variants)) => {
                self.enum_value(name, container, variants)
            }
        }
    }

    /// A variant index, then the variant's content: `"Variant"` or `{"Variant": content}`.
    #[inline(never)]
    fn enum_value(
        &mut self,
        name: &str,
        container: &ContainerFormat,
        variants: &BTreeMap<u32, Named<VariantFormat>>,
    ) -> Result<Value, CodecError> {
        let variant = self.variant(name, container, variants)?;
        self.spend_name(&variant.name)?;
        let mark = self.path.field(&variant.name);
        let content = match &variant.value {
            VariantFormat::Variable(_) => return Err(self.unresolved()),
            VariantFormat::Unit => None,
            VariantFormat::NewType(inner) => Some(self.value(inner)?),
            VariantFormat::Tuple(formats) => Some(self.tuple(formats)?),
            VariantFormat::Struct(fields) => Some(self.fields(fields)?),
        };
        self.path.cut(mark);
        Ok(match content {
            None => Value::String(variant.name.clone()),
            Some(content) => {
                let mut object = Map::new();
                object.insert(variant.name.clone(), content);
                Value::Object(object)
            }
        })
    }

    /// Reads a variant index and finds its variant.
    #[inline(never)]
    fn variant<'f>(
        &mut self,
        name: &str,
        container: &ContainerFormat,
        variants: &'f BTreeMap<u32, Named<VariantFormat>>,
    ) -> Result<&'f Named<VariantFormat>, CodecError> {
        let index = self.varint(u32::BITS, "variant index")?;
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        variants
            .get(&index)
            .ok_or_else(|| CodecError::UnknownVariantIndex {
                path: self.path.text(),
                index,
                expected: container_name(name, container),
            })
    }

    #[inline(never)]
    fn fields(&mut self, fields: &[Named<Format>]) -> Result<Value, CodecError> {
        let mut object = Map::new();
        for field in fields {
            self.spend_name(&field.name)?;
            let mark = self.path.field(&field.name);
            let value = self.value(&field.value)?;
            self.path.cut(mark);
            object.insert(field.name.clone(), value);
        }
        Ok(Value::Object(object))
    }

    #[inline(never)]
    fn tuple(&mut self, formats: &[Format]) -> Result<Value, CodecError> {
        let mut items = Vec::with_capacity(formats.len());
        for (i, format) in formats.iter().enumerate() {
            let mark = self.path.index(i);
            items.push(self.value(format)?);
            self.path.cut(mark);
        }
        Ok(Value::Array(items))
    }

    /// A map's entry whose key is not written as a string: `[key, value]` (as a tuple of the
    /// two formats, which are the map's own: every format met keeps its address in the memo).
    fn pair(&mut self, key: &Format, value: &Format) -> Result<Value, CodecError> {
        let mut items = Vec::with_capacity(2);
        for (i, format) in [key, value].into_iter().enumerate() {
            let mark = self.path.index(i);
            items.push(self.value(format)?);
            self.path.cut(mark);
        }
        Ok(Value::Array(items))
    }

    /// `len` values of one format. `len` is a checked length or a type's fixed array size;
    /// room is reserved for no more than the input could hold, nor [`RESERVE_MAX`] values
    /// (nested sequences each claiming the whole input reserve no more than that each).
    #[inline(never)]
    fn elements(&mut self, len: usize, format: &Format) -> Result<Value, CodecError> {
        let mut items = Vec::with_capacity(len.min(self.input.len()).min(RESERVE_MAX));
        for i in 0..len {
            let mark = self.path.index(i);
            items.push(self.value(format)?);
            self.path.cut(mark);
        }
        Ok(Value::Array(items))
    }

    #[inline(never)]
    fn map(&mut self, key: &Format, value: &Format) -> Result<Value, CodecError> {
        let zero_sized = self.shapes.is_zero_sized(key, self.registry)
            && self.shapes.is_zero_sized(value, self.registry);
        let len = self.element_count(zero_sized)?;
        if !self.shapes.keys_are_strings(key, self.registry) {
            let mut pairs = Vec::with_capacity(len.min(self.input.len()).min(RESERVE_MAX));
            for i in 0..len {
                let mark = self.path.index(i);
                pairs.push(self.pair(key, value)?);
                self.path.cut(mark);
            }
            return Ok(Value::Array(pairs));
        }
        let mut object = Map::new();
        for i in 0..len {
            let mark = self.path.index(i);
            let key = match self.value(key)? {
                Value::String(key) => key,
                other => other.to_string(),
            };
            self.path.cut(mark);
            if object.contains_key(&key) {
                return Err(CodecError::DuplicateKey {
                    path: self.path.text(),
                    key: Value::String(key).to_string(),
                });
            }
            let mark = self.path.key(&key);
            let item = self.value(value)?;
            self.path.cut(mark);
            object.insert(key, item);
        }
        Ok(Value::Object(object))
    }

    fn integer(&mut self, ty: IntType) -> Result<Value, CodecError> {
        let n = if ty.bits() == 8 {
            let byte = self.byte()?;
            match i8::from_le_bytes([byte]) {
                n if ty.signed() && n < 0 => Int::Negative(n.into()),
                _ => Int::NonNegative(byte.into()),
            }
        } else {
            let raw = self.varint(ty.bits(), ty.name)?;
            match (ty.signed(), raw & 1) {
                // Undo the zigzag: even numbers are non-negative, odd ones negative.
                (true, 0) => Int::NonNegative(raw >> 1),
                // -(raw / 2) - 1, without overflow at i128::MIN.
                (true, _) => Int::Negative(-(raw >> 1).cast_signed() - 1),
                (false, _) => Int::NonNegative(raw),
            }
        };
        Ok(ty.to_json(n))
    }

    /// A length: one byte at least per element (or byte) must follow, unless elements are
    /// zero-sized, whose count is bounded by [`MAX_ZERO_SIZED_ELEMENTS`].
    fn element_count(&mut self, zero_sized: bool) -> Result<usize, CodecError> {
        let length = self.varint(u64::BITS, "length")?;
        let length = u64::try_from(length).unwrap_or(u64::MAX);
        let remaining = self.input.len();
        let limit = if zero_sized {
            MAX_ZERO_SIZED_ELEMENTS
        } else {
            remaining
        };
        match usize::try_from(length) {
            Ok(len) if len <= limit => Ok(len),
            _ if zero_sized => Err(CodecError::TooManyElements {
                path: self.path.text(),
                length,
                limit,
            }),
            _ => Err(CodecError::LengthTooLarge {
                path: self.path.text(),
                length,
                remaining,
            }),
        }
    }

    fn string(&mut self, expected: &'static str) -> Result<String, CodecError> {
        let len = self.element_count(false)?;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(CodecError::BadUtf8 {
                path: self.path.text(),
                expected,
            }),
        }
    }

    /// A varint of an unsigned type of `bits` bits, as postcard reads it: at most
    /// `ceil(bits / 7)` bytes, and the last byte may not carry bits beyond the type.
    fn varint(&mut self, bits: u32, expected: &'static str) -> Result<u128, CodecError> {
        let max_bytes = bits.div_ceil(7);
        let last_max = (1u16 << (bits % 7)) - 1;
        let mut out = 0u128;
        for i in 0..max_bytes {
            let byte = self.byte()?;
            out |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == max_bytes - 1 && u16::from(byte) > last_max {
                    break;
                }
                return Ok(out);
            }
        }
        Err(CodecError::BadVarint {
            path: self.path.text(),
            expected,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'b [u8], CodecError> {
        if len > self.input.len() {
            return Err(CodecError::UnexpectedEnd {
                path: self.path.text(),
                needed: len,
                remaining: self.input.len(),
            });
        }
        let (taken, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(taken)
    }

    #[cold]
    #[inline(never)]
    fn bad_tag(&self, expected: &'static str, byte: u8) -> CodecError {
        CodecError::BadTag {
            path: self.path.text(),
            expected,
            byte,
        }
    }

    #[cold]
    #[inline(never)]
    fn unknown_type(&self, name: &str) -> CodecError {
        CodecError::UnknownType {
            path: self.path.text(),
            name: name.to_owned(),
        }
    }

    #[cold]
    #[inline(never)]
    fn unresolved(&self) -> CodecError {
        CodecError::Unresolved {
            path: self.path.text(),
        }
    }

    #[cold]
    #[inline(never)]
    fn too_many_values(&self) -> CodecError {
        CodecError::TooManyValues {
            path: self.path.text(),
            limit: value_budget(self.start_len),
        }
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> CodecError {
        CodecError::TooDeep {
            path: self.path.text(),
            limit: MAX_DEPTH,
        }
    }
}
