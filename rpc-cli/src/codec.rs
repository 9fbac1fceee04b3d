//! Converts between JSON values and postcard bytes, guided by a traced type shape.
//!
//! The command-line tool has no Rust types for the services it calls: it knows each argument and
//! result only as a [`Format`] (the shape serde-reflection traces from a type's serde impls) and a
//! [`Registry`] of the named structs and enums that `Format::TypeName` refers to. This module
//! writes a [`serde_json::Value`] in the postcard 1.x wire format of that shape ([`encode`]) and
//! reads postcard bytes back into JSON ([`decode`]), the bytes a real `postcard::to_stdvec` of
//! the Rust value would give, and the value `serde_json` would give for it, with these choices
//! where JSON has no single answer:
//!
//! | shape | JSON |
//! |---|---|
//! | unit, unit struct | `null` |
//! | `u8` ... `u64`, `i8` ... `i64` | number |
//! | `u128`, `i128` | string (`"340282366920938463463374607431768211455"`); a number is accepted on input |
//! | `f32`, `f64` | number; `"NaN"`, `"inf"`, `"-inf"` for the values JSON cannot write |
//! | `char`, `String` | string |
//! | bytes | array of numbers |
//! | `Option<T>` | `null` or the value (so `Some(())` reads back as `None`, as in `serde_json`) |
//! | sequence, tuple, array, tuple struct | array |
//! | struct | object, fields in declaration order; a missing `Option` field is `None` |
//! | newtype struct | the inner value |
//! | enum | `"Variant"` for a unit variant, `{"Variant": content}` for the others |
//! | map | object when keys are strings, chars, integers or unit variants; else `[[key, value], ...]` |
//!
//! Numbers that do not fit their type are refused, never wrapped or truncated. Every error on
//! JSON input names the path of the offending value (`point.x`, `args[1].items[3]`), the type
//! expected there and what was given. Decoding treats its input, and the registry, as coming
//! from a peer: it checks every length against the bytes left before allocating, refuses
//! trailing bytes, bounds nesting at [`MAX_DEPTH`] so that a recursive type cannot exhaust the
//! stack, and bounds the number of values by the input's size and by [`MAX_VALUES`] so that
//! types of zero bytes nested by a hostile registry cannot multiply without end, nor long names
//! in its registry be copied once per byte of input ([`CodecError::TooManyValues`]); it looks
//! through each of the registry's types once, however often the input asks about it.
//!
//! ```
//! use rpc_cli::codec::{decode, encode};
//! use serde_json::json;
//! use serde_reflection::{Format, Registry};
//!
//! let registry = Registry::new();
//! let format = Format::Tuple(vec![Format::I64, Format::Str]);
//! let bytes = encode(&json!([-2, "hi"]), &format, &registry, "args")?;
//! assert_eq!(bytes, [3, 2, b'h', b'i']);
//! assert_eq!(decode(&bytes, &format, &registry, "result")?, json!([-2, "hi"]));
//!
//! let err = encode(&json!([300, "hi"]), &Format::Tuple(vec![Format::U8, Format::Str]), &registry, "args");
//! assert_eq!(err.unwrap_err().to_string(), "args[0]: 300 is out of range for u8 (0 to 255)");
//! # Ok::<(), rpc_cli::codec::CodecError>(())
//! ```

mod decode;
mod encode;
mod error;
mod number;
mod path;
mod shape;
mod word;

#[cfg(test)]
mod tests;

use serde_json::Value;
use serde_reflection::{Format, Registry};

pub use error::CodecError;
pub use shape::type_name;
pub use word::{parse_json, word_to_json};

/// How deeply formats may nest, counting every struct, enum, sequence, option and named type
/// passed through; deeper values are refused with [`CodecError::TooDeep`]. The same limit as
/// `serde_json`'s; it keeps a debug build within a few hundred KiB of stack.
pub const MAX_DEPTH: usize = 128;

/// How many elements a decoded sequence or map of zero-sized elements (such as `Vec<()>`) may
/// declare. Other sequences are bounded by the input itself, since each element takes a byte.
pub const MAX_ZERO_SIZED_ELEMENTS: usize = 1 << 16;

/// The most values (every struct, field, element, byte of a byte buffer, ...) one decode
/// produces, whatever the input's size: `serde_json`'s values take 72 bytes each, so at most
/// about 1.2 GB, and the text of strings and keys (bounded by the input). Below it, a decode
/// produces at most 8 values per byte of input and 65,536 more, about 600 bytes of memory per
/// byte of a reply; past either, [`CodecError::TooManyValues`].
pub const MAX_VALUES: usize = 1 << 24;

/// Encodes `value`, a JSON value of shape `format`, in the postcard wire format.
///
/// `path` names the value in error messages (an argument's name, say); paths inside it are
/// appended (`point.x`, `items[3]`).
///
/// # Errors
///
/// A [`CodecError`] naming the path, the expected type and what was given when the value does not
/// have the shape of `format` or a number does not fit its type; [`CodecError::UnknownType`] when
/// `format` names a type missing from `registry`.
pub fn encode(
    value: &Value,
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(&mut out, value, format, registry, path)?;
    Ok(out)
}

/// Appends the postcard encoding of `value` to `out`; see [`encode`].
///
/// # Errors
///
/// As [`encode`]; on error `out` may hold part of the encoding.
pub fn encode_into(
    out: &mut Vec<u8>,
    value: &Value,
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<(), CodecError> {
    encode::Encoder::new(registry, out, path).value(value, format)
}

/// Encodes the arguments of a call: `values[i]` has the shape of the `i`th element of
/// `args_format`, a `Format::Tuple` of the arguments (any other format is one argument).
///
/// Errors name an argument by `names[i]` where given, else as `args[i]`.
///
/// # Errors
///
/// [`CodecError::ArgumentCount`] when the number of values differs from the number of
/// arguments; otherwise as [`encode`].
pub fn encode_args<S: AsRef<str>>(
    values: &[Value],
    names: &[S],
    args_format: &Format,
    registry: &Registry,
) -> Result<Vec<u8>, CodecError> {
    let formats = argument_formats(args_format);
    if values.len() != formats.len() {
        return Err(CodecError::ArgumentCount {
            expected: formats.len(),
            given: values.len(),
        });
    }
    let mut out = Vec::new();
    for (i, (value, format)) in values.iter().zip(formats).enumerate() {
        encode_into(&mut out, value, format, registry, &argument_path(names, i))?;
    }
    Ok(out)
}

/// The formats of a method's arguments, given their tuple: a `Format::Tuple` holds one format
/// per argument, any other format is a single argument.
pub fn argument_formats(args_format: &Format) -> &[Format] {
    match args_format {
        Format::Tuple(formats) => formats,
        single => std::slice::from_ref(single),
    }
}

/// How errors name argument `index`: `names[index]` where given, else `args[index]`.
pub fn argument_path<S: AsRef<str>>(names: &[S], index: usize) -> String {
    match names.get(index) {
        Some(name) => name.as_ref().to_owned(),
        None => format!("args[{index}]"),
    }
}

/// Decodes `bytes`, the postcard encoding of a value of shape `format`, into JSON; the whole
/// input must be consumed.
///
/// `path` names the value in error messages (`result`, say).
///
/// # Errors
///
/// [`CodecError::TrailingBytes`] when bytes are left after the value; otherwise as
/// [`take_from_bytes`].
pub fn decode(
    bytes: &[u8],
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<Value, CodecError> {
    let (value, rest) = take_from_bytes(bytes, format, registry, path)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError::TrailingBytes { count: rest.len() })
    }
}

/// Decodes one value of shape `format` from the front of `bytes`, returning it and the bytes
/// after it.
///
/// # Errors
///
/// A [`CodecError`] naming the path inside the value when the input ends early
/// ([`CodecError::UnexpectedEnd`]), declares a length longer than what is left
/// ([`CodecError::LengthTooLarge`]), or holds an invalid varint, tag, variant index, UTF-8 or
/// char; [`CodecError::UnknownType`] when `format` names a type missing from `registry`.
pub fn take_from_bytes<'b>(
    bytes: &'b [u8],
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<(Value, &'b [u8]), CodecError> {
    let mut decoder = decode::Decoder::new(registry, bytes, path);
    let value = decoder.value(format)?;
    Ok((value, decoder.rest()))
}
