//! JSON to postcard.
//!
//! The functions on the recursive path stay small (the error building is out of line) so that
//! [`MAX_DEPTH`] levels fit in a thread's stack even in a debug build.

use serde_json::{Map, Value};
use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

use super::number::{float_from_json, write_varint, IntType, NumberError};
use super::path::Path;
use super::shape::{given, keys_are_strings, type_name, Expected};
use super::word::key_to_json;
use super::{CodecError, MAX_DEPTH};

/// Writes one JSON value after another into `out`, tracking the path for errors.
pub(super) struct Encoder<'a> {
    registry: &'a Registry,
    out: &'a mut Vec<u8>,
    path: Path,
    depth: usize,
}

impl<'a> Encoder<'a> {
    pub(super) fn new(registry: &'a Registry, out: &'a mut Vec<u8>, path: &str) -> Self {
        Encoder {
            registry,
            out,
            path: Path::new(path),
            depth: 0,
        }
    }

    /// Encodes `value` as `format` at the current path.
    pub(super) fn value(&mut self, value: &Value, format: &Format) -> Result<(), CodecError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.depth += 1;
        let result = self.dispatch(value, format);
        self.depth -= 1;
        result
    }

    #[inline(never)]
    fn dispatch(&mut self, value: &Value, format: &Format) -> Result<(), CodecError> {
        match format {
            Format::TypeName(name) => self.container(value, name),
            Format::Option(inner) => {
                if value.is_null() {
                    self.out.push(0);
                    Ok(())
                } else {
                    self.out.push(1);
                    self.value(value, inner)
                }
            }
            Format::Seq(inner) => {
                let items = self.array(value, Expected::Format(format))?;
                self.length(items.len());
                self.elements(items, inner)
            }
            Format::Map { key, value: item } => self.map(value, format, key, item),
            Format::Tuple(formats) => self.tuple(value, Expected::Format(format), formats),
            Format::TupleArray { content, size } => {
                let items = self.array(value, Expected::Format(format))?;
                self.check_len(Expected::Format(format), items.len(), *size)?;
                self.elements(items, content)
            }
            scalar => self.scalar(value, scalar),
        }
    }

    /// Every format that holds no other format.
    #[inline(never)]
    fn scalar(&mut self, value: &Value, format: &Format) -> Result<(), CodecError> {
        if let Some(ty) = IntType::of(format) {
            let n = ty
                .read_json(value)
                .map_err(|e| self.number_error(e, ty.name, value))?;
            ty.write(self.out, n);
            return Ok(());
        }
        match (format, value) {
            (Format::Unit, Value::Null) => {}
            (Format::Unit, _) => return Err(self.mismatch(Expected::Unit, value)),
            (Format::Bool, Value::Bool(b)) => self.out.push(u8::from(*b)),
            (Format::F32 | Format::F64, _) => {
                let x = float_from_json(value, format)
                    .map_err(|e| self.number_error(e, &type_name(format), value))?;
                if *format == Format::F32 {
                    // In range (checked), so narrowing only rounds to the nearest f32.
                    self.out.extend_from_slice(&(x as f32).to_le_bytes());
                } else {
                    self.out.extend_from_slice(&x.to_le_bytes());
                }
            }
            (Format::Char, Value::String(s)) if s.chars().count() == 1 => {
                self.bytes_with_length(s.as_bytes());
            }
            (Format::Str, Value::String(s)) => self.bytes_with_length(s.as_bytes()),
            (Format::Bytes, Value::Array(items)) => {
                self.length(items.len());
                for (i, item) in items.iter().enumerate() {
                    let mark = self.path.index(i);
                    self.scalar(item, &Format::U8)?;
                    self.path.cut(mark);
                }
            }
            (Format::Variable(_), _) => return Err(self.unresolved()),
            _ => return Err(self.mismatch(Expected::Format(format), value)),
        }
        Ok(())
    }

    #[inline(never)]
    fn container(&mut self, value: &Value, name: &str) -> Result<(), CodecError> {
        let registry = self.registry;
        let Some(container) = registry.get(name) else {
            return Err(self.unknown_type(name));
        };
        match container {
            ContainerFormat::UnitStruct => match value {
                Value::Null => Ok(()),
                _ => Err(self.mismatch(Expected::UnitStruct(name), value)),
            },
            ContainerFormat::NewTypeStruct(inner) => self.value(value, inner),
            ContainerFormat::TupleStruct(formats) => {
                self.tuple(value, Expected::TupleStruct(name), formats)
            }
            ContainerFormat::Struct(fields) => self.fields(value, Expected::Struct(name), fields),
            ContainerFormat::Enum(variants) => {
                let (index, variant, content) = self.variant(value, name, variants)?;
                write_varint(self.out, index.into());
                let mark = self.path.field(&variant.name);
                let expected = Expected::Variant(&variant.name, name);
                match &variant.value {
                    VariantFormat::NewType(inner) => self.value(content, inner)?,
                    VariantFormat::Tuple(formats) => self.tuple(content, expected, formats)?,
                    VariantFormat::Struct(fields) => self.fields(content, expected, fields)?,
                    // Checked by `variant`.
                    VariantFormat::Unit | VariantFormat::Variable(_) => {}
                }
                self.path.cut(mark);
                Ok(())
            }
        }
    }

    /// Which variant a JSON enum value names, with its index and content; a unit variant's
    /// content is checked here.
    #[inline(never)]
    fn variant<'v, 'f>(
        &self,
        value: &'v Value,
        name: &str,
        variants: &'f std::collections::BTreeMap<u32, Named<VariantFormat>>,
    ) -> Result<(u32, &'f Named<VariantFormat>, &'v Value), CodecError> {
        let (variant_name, content) = match value {
            Value::String(variant) => (variant, &Value::Null),
            Value::Object(object) if object.len() == 1 => match object.iter().next() {
                Some(entry) => entry,
                None => return Err(self.mismatch(Expected::Enum(name), value)),
            },
            _ => return Err(self.mismatch(Expected::Enum(name), value)),
        };
        let Some((index, variant)) = variants.iter().find(|(_, v)| v.name == *variant_name) else {
            let known: Vec<&str> = variants.values().map(|v| v.name.as_str()).collect();
            return Err(CodecError::UnknownVariant {
                path: self.path.text(),
                variant: variant_name.clone(),
                expected: Expected::Enum(name).text(),
                known: known.join(", "),
            });
        };
        match (&variant.value, content) {
            (VariantFormat::Variable(_), _) => Err(self.unresolved()),
            (VariantFormat::Unit, Value::Null) => Ok((*index, variant, content)),
            (VariantFormat::Unit, _) => {
                let mut path = Path::new(self.path.as_str());
                path.field(variant_name);
                Err(CodecError::Mismatch {
                    path: path.text(),
                    expected: Expected::UnitVariant(variant_name, name).text(),
                    given: given(content),
                })
            }
            (_, _) if value.is_string() => {
                Err(self.mismatch(Expected::VariantContent(variant_name, name), value))
            }
            _ => Ok((*index, variant, content)),
        }
    }

    /// A struct's fields, in declaration order, from a JSON object.
    #[inline(never)]
    fn fields(
        &mut self,
        value: &Value,
        expected: Expected<'_>,
        fields: &[Named<Format>],
    ) -> Result<(), CodecError> {
        let object = self.object(value, expected, fields)?;
        for field in fields {
            match (object.get(&field.name), &field.value) {
                (Some(item), format) => {
                    let mark = self.path.field(&field.name);
                    self.value(item, format)?;
                    self.path.cut(mark);
                }
                (None, Format::Option(_)) => self.out.push(0),
                (None, _) => return Err(self.missing_field(&field.name, expected)),
            }
        }
        Ok(())
    }

    /// The JSON object of a struct, checked for fields the struct does not have.
    #[inline(never)]
    fn object<'v>(
        &self,
        value: &'v Value,
        expected: Expected<'_>,
        fields: &[Named<Format>],
    ) -> Result<&'v Map<String, Value>, CodecError> {
        let Value::Object(object) = value else {
            return Err(self.mismatch(expected, value));
        };
        let known = |key: &String| fields.iter().any(|field| field.name == *key);
        if let Some(unknown) = object.keys().find(|key| !known(key)) {
            let names: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
            return Err(CodecError::UnknownField {
                path: self.path.text(),
                field: unknown.clone(),
                expected: expected.text(),
                known: names.join(", "),
            });
        }
        Ok(object)
    }

    /// A tuple or tuple struct: a JSON array with one element per format.
    #[inline(never)]
    fn tuple(
        &mut self,
        value: &Value,
        expected: Expected<'_>,
        formats: &[Format],
    ) -> Result<(), CodecError> {
        let items = self.array(value, expected)?;
        self.check_len(expected, items.len(), formats.len())?;
        for (i, (item, format)) in items.iter().zip(formats).enumerate() {
            let mark = self.path.index(i);
            self.value(item, format)?;
            self.path.cut(mark);
        }
        Ok(())
    }

    /// The elements of a sequence or array, all of one format.
    #[inline(never)]
    fn elements(&mut self, items: &[Value], format: &Format) -> Result<(), CodecError> {
        for (i, item) in items.iter().enumerate() {
            let mark = self.path.index(i);
            self.value(item, format)?;
            self.path.cut(mark);
        }
        Ok(())
    }

    #[inline(never)]
    fn map(
        &mut self,
        value: &Value,
        format: &Format,
        key: &Format,
        item: &Format,
    ) -> Result<(), CodecError> {
        match value {
            Value::Object(object) if keys_are_strings(key, self.registry) => {
                self.length(object.len());
                for (name, item_value) in object {
                    let mark = self.path.key(name);
                    let key_value = key_to_json(name, key, self.registry, self.path.as_str())?;
                    self.value(&key_value, key)?;
                    self.value(item_value, item)?;
                    self.path.cut(mark);
                }
                Ok(())
            }
            Value::Array(pairs) => {
                self.length(pairs.len());
                let pair = [key.clone(), item.clone()];
                for (i, entry) in pairs.iter().enumerate() {
                    let mark = self.path.index(i);
                    self.tuple(entry, Expected::Format(format), &pair)?;
                    self.path.cut(mark);
                }
                Ok(())
            }
            _ => Err(self.mismatch(Expected::Format(format), value)),
        }
    }

    fn array<'v>(
        &self,
        value: &'v Value,
        expected: Expected<'_>,
    ) -> Result<&'v [Value], CodecError> {
        match value {
            Value::Array(items) => Ok(items),
            _ => Err(self.mismatch(expected, value)),
        }
    }

    fn check_len(
        &self,
        expected: Expected<'_>,
        given_len: usize,
        expected_len: usize,
    ) -> Result<(), CodecError> {
        if given_len == expected_len {
            return Ok(());
        }
        Err(CodecError::WrongLength {
            path: self.path.text(),
            expected: expected.text(),
            expected_len,
            given_len,
        })
    }

    fn bytes_with_length(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    fn length(&mut self, len: usize) {
        write_varint(self.out, len as u128);
    }

    #[cold]
    #[inline(never)]
    fn number_error(&self, error: NumberError, expected: &str, value: &Value) -> CodecError {
        match error {
            NumberError::Mismatch => CodecError::Mismatch {
                path: self.path.text(),
                expected: expected.to_owned(),
                given: given(value),
            },
            NumberError::OutOfRange { min, max } => CodecError::OutOfRange {
                path: self.path.text(),
                expected: expected.to_owned(),
                given: given(value),
                min,
                max,
            },
        }
    }

    #[cold]
    #[inline(never)]
    fn mismatch(&self, expected: Expected<'_>, value: &Value) -> CodecError {
        CodecError::Mismatch {
            path: self.path.text(),
            expected: expected.text(),
            given: given(value),
        }
    }

    #[cold]
    #[inline(never)]
    fn missing_field(&self, field: &str, expected: Expected<'_>) -> CodecError {
        CodecError::MissingField {
            path: self.path.text(),
            field: field.to_owned(),
            expected: expected.text(),
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
    fn too_deep(&self) -> CodecError {
        CodecError::TooDeep {
            path: self.path.text(),
            limit: MAX_DEPTH,
        }
    }
}
