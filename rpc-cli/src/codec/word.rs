//! Command-line words to JSON values.

use serde_json::Value;
use serde_reflection::{Format, Registry};

use super::number::{float_from_json, float_to_json, IntType, NumberError};
use super::shape::{json_shape, type_name};
use super::CodecError;

/// Turns a word typed on the command line into the JSON value of an argument of shape
/// `format`, so that plain values need no JSON quoting where that is unambiguous:
///
/// - integer types read the word as a decimal integer (`-5`, `300`), refusing values that do not
///   fit; 128-bit integers become JSON strings, as the codec writes them;
/// - float types read it as a number (`2.5`, `1e-3`, `inf`, `NaN`);
/// - `String` and `char` take the word as it is, quotes included;
/// - every other type reads the word as JSON (`true`, `null`, `[1, 2]`, `{"x": 1}`).
///
/// Named newtype structs count as what they wrap: a `struct UserId(u32)` argument reads `42`.
/// The value is not checked further here; [`encode`](super::encode) checks it against `format`.
///
/// # Errors
///
/// [`CodecError::Mismatch`] or [`CodecError::OutOfRange`] when a number type gets a word that is
/// not a number of that type; [`CodecError::InvalidJson`] when a JSON type gets a word that is
/// not JSON. Each names `path`, the expected type and the word.
pub fn word_to_json(
    word: &str,
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<Value, CodecError> {
    let shape = json_shape(format, registry);
    let quoted = || Value::String(word.to_owned()).to_string();
    let expected = || {
        if shape == format {
            type_name(format)
        } else {
            format!("{} ({})", type_name(format), type_name(shape))
        }
    };
    let number_error = |error| match error {
        NumberError::Mismatch => CodecError::Mismatch {
            path: path.to_owned(),
            expected: expected(),
            given: quoted(),
        },
        NumberError::OutOfRange { min, max } => CodecError::OutOfRange {
            path: path.to_owned(),
            expected: expected(),
            given: word.to_owned(),
            min,
            max,
        },
    };
    if let Some(ty) = IntType::of(shape) {
        return ty.parse(word).map(|n| ty.to_json(n)).map_err(number_error);
    }
    match shape {
        Format::F32 | Format::F64 => {
            let x: f64 = word
                .parse()
                .map_err(|_| number_error(NumberError::Mismatch))?;
            // A finite number too large for an `f64` parses as infinity: out of range, unless
            // infinity is what it says.
            let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
            let says_infinity =
                unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity");
            if x.is_infinite() && !says_infinity {
                let (min, max) = match shape {
                    Format::F32 => (format!("{:e}", f32::MIN), format!("{:e}", f32::MAX)),
                    _ => (format!("{:e}", f64::MIN), format!("{:e}", f64::MAX)),
                };
                return Err(number_error(NumberError::OutOfRange { min, max }));
            }
            let value = float_to_json(x);
            float_from_json(&value, shape).map_err(number_error)?;
            Ok(value)
        }
        Format::Str | Format::Char => Ok(Value::String(word.to_owned())),
        _ => parse_json(word, format, path),
    }
}

/// Reads `text` as the JSON of a value of shape `format` (what `rpc call --json` does with
/// every argument). The value is not checked further here; [`encode`](super::encode) checks it.
///
/// # Errors
///
/// [`CodecError::InvalidJson`] naming `path`, the expected type and the text when it is not
/// JSON.
pub fn parse_json(text: &str, format: &Format, path: &str) -> Result<Value, CodecError> {
    serde_json::from_str(text).map_err(|e| CodecError::InvalidJson {
        path: path.to_owned(),
        expected: type_name(format),
        given: Value::String(text.to_owned()).to_string(),
        reason: e.to_string(),
    })
}

/// The JSON value of a map key written as a JSON object's key: the name itself for an enum's
/// unit variant, else as [`word_to_json`] reads it.
pub(super) fn key_to_json(
    key: &str,
    format: &Format,
    registry: &Registry,
    path: &str,
) -> Result<Value, CodecError> {
    match json_shape(format, registry) {
        Format::TypeName(_) => Ok(Value::String(key.to_owned())),
        _ => word_to_json(key, format, registry, path),
    }
}
