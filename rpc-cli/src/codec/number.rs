//! Numbers: reading them from JSON and words with their ranges checked, and writing them.

use serde_json::Value;
use serde_reflection::Format;

/// An integer read from JSON or a word, before its range is checked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Int {
    NonNegative(u128),
    Negative(i128),
}

/// Why a JSON value is not a number of the type asked for.
#[derive(Debug)]
pub(super) enum NumberError {
    /// Not a number at all, or a fraction where an integer is needed.
    Mismatch,
    /// A number outside the type's range, which is `min` to `max`.
    OutOfRange { min: String, max: String },
}

/// An integer type: its name, its range, and how postcard writes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct IntType {
    pub(super) name: &'static str,
    min: i128,
    max: u128,
    bits: u32,
}

impl IntType {
    /// The integer type of `format`, if it is one.
    pub(super) fn of(format: &Format) -> Option<IntType> {
        let (name, min, max, bits): (_, i128, u128, _) = match format {
            Format::U8 => ("u8", 0, u8::MAX.into(), u8::BITS),
            Format::U16 => ("u16", 0, u16::MAX.into(), u16::BITS),
            Format::U32 => ("u32", 0, u32::MAX.into(), u32::BITS),
            Format::U64 => ("u64", 0, u64::MAX.into(), u64::BITS),
            Format::U128 => ("u128", 0, u128::MAX, u128::BITS),
            Format::I8 => (
                "i8",
                i8::MIN.into(),
                i8::MAX.unsigned_abs().into(),
                i8::BITS,
            ),
            Format::I16 => (
                "i16",
                i16::MIN.into(),
                i16::MAX.unsigned_abs().into(),
                i16::BITS,
            ),
            Format::I32 => (
                "i32",
                i32::MIN.into(),
                i32::MAX.unsigned_abs().into(),
                i32::BITS,
            ),
            Format::I64 => (
                "i64",
                i64::MIN.into(),
                i64::MAX.unsigned_abs().into(),
                i64::BITS,
            ),
            Format::I128 => ("i128", i128::MIN, i128::MAX.unsigned_abs(), i128::BITS),
            _ => return None,
        };
        Some(IntType {
            name,
            min,
            max,
            bits,
        })
    }

    /// Whether negative values exist; postcard zigzags those before writing a varint.
    pub(super) fn signed(self) -> bool {
        self.min < 0
    }

    /// The width in bits. `u8` and `i8` are one byte on the wire; the others are varints.
    pub(super) fn bits(self) -> u32 {
        self.bits
    }

    /// Whether JSON writes this type as a string: 128-bit values do not all fit JSON numbers.
    pub(super) fn as_string(self) -> bool {
        self.name.ends_with("128")
    }

    fn out_of_range(self) -> NumberError {
        NumberError::OutOfRange {
            min: self.min.to_string(),
            max: self.max.to_string(),
        }
    }

    /// `n` if it is in range.
    pub(super) fn check(self, n: Int) -> Result<Int, NumberError> {
        let fits = match n {
            Int::NonNegative(n) => n <= self.max,
            Int::Negative(n) => n >= self.min,
        };
        if fits {
            Ok(n)
        } else {
            Err(self.out_of_range())
        }
    }

    /// Reads a JSON value of this type: a number, or a decimal string for the 128-bit types.
    pub(super) fn read_json(self, value: &Value) -> Result<Int, NumberError> {
        let n = match value {
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    Int::NonNegative(n.into())
                } else if let Some(n) = n.as_i64() {
                    Int::Negative(n.into())
                } else if n
                    .as_f64()
                    .is_some_and(|x| x.fract() == 0.0 && x.abs() >= 2f64.powi(63))
                {
                    // An integer too large for JSON's 64-bit integers, read as a float.
                    return Err(self.out_of_range());
                } else {
                    return Err(NumberError::Mismatch);
                }
            }
            Value::String(s) if self.as_string() => self.parse(s)?,
            _ => return Err(NumberError::Mismatch),
        };
        self.check(n)
    }

    /// Reads a decimal integer of this type from text.
    pub(super) fn parse(self, text: &str) -> Result<Int, NumberError> {
        use std::num::IntErrorKind::{NegOverflow, PosOverflow};
        let n = match text.parse::<i128>() {
            Ok(n) if n < 0 => Int::Negative(n),
            Ok(n) => Int::NonNegative(n.unsigned_abs()),
            Err(e) if *e.kind() == PosOverflow => match text.parse::<u128>() {
                Ok(n) => Int::NonNegative(n),
                Err(_) => return Err(self.out_of_range()),
            },
            Err(e) if *e.kind() == NegOverflow => return Err(self.out_of_range()),
            Err(_) => return Err(NumberError::Mismatch),
        };
        self.check(n)
    }

    /// Writes `n`, which [`check`](Self::check) accepted, as postcard does.
    pub(super) fn write(self, out: &mut Vec<u8>, n: Int) {
        let (magnitude, negative) = match n {
            Int::NonNegative(n) => (n, false),
            Int::Negative(n) => (n.unsigned_abs(), true),
        };
        if self.bits == 8 {
            // Two's complement of an in-range value: the low byte says it all.
            let byte = if negative {
                magnitude.wrapping_neg()
            } else {
                magnitude
            };
            out.push(byte.to_le_bytes()[0]);
        } else if self.signed() {
            // Zigzag: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...; the same at every width.
            let zigzag = match (negative, magnitude.checked_sub(1)) {
                (true, Some(below)) => (below << 1) | 1,
                _ => magnitude << 1,
            };
            write_varint(out, zigzag);
        } else {
            write_varint(out, magnitude);
        }
    }

    /// The JSON form of `n`: a number, or a string for the 128-bit types.
    pub(super) fn to_json(self, n: Int) -> Value {
        match (n, self.as_string()) {
            (Int::NonNegative(n), true) => Value::String(n.to_string()),
            (Int::Negative(n), true) => Value::String(n.to_string()),
            (Int::NonNegative(n), false) => match u64::try_from(n) {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(n.to_string()),
            },
            (Int::Negative(n), false) => match i64::try_from(n) {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(n.to_string()),
            },
        }
    }
}

/// Reads a float from JSON: a number, or `"NaN"`, `"inf"`, `"-inf"`. An `f32` refuses finite
/// numbers beyond its range (narrowing otherwise rounds to the nearest `f32`, as Rust's `as`
/// does).
pub(super) fn float_from_json(value: &Value, format: &Format) -> Result<f64, NumberError> {
    let x = match value {
        Value::Number(n) => n.as_f64().ok_or(NumberError::Mismatch)?,
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => return Err(NumberError::Mismatch),
        },
        _ => return Err(NumberError::Mismatch),
    };
    if *format == Format::F32 && x.is_finite() && (x as f32).is_infinite() {
        return Err(NumberError::OutOfRange {
            min: format!("{:e}", f32::MIN),
            max: format!("{:e}", f32::MAX),
        });
    }
    Ok(x)
}

/// The JSON form of a float: a number, or `"NaN"`, `"inf"`, `"-inf"`.
pub(super) fn float_to_json(x: f64) -> Value {
    if x.is_nan() {
        Value::from("NaN")
    } else if x == f64::INFINITY {
        Value::from("inf")
    } else if x == f64::NEG_INFINITY {
        Value::from("-inf")
    } else {
        Value::from(x)
    }
}

/// The JSON form of an `f32`: its shortest decimal form, so that `0.1f32` reads `0.1`, not
/// `0.10000000149011612`; reading that decimal as an `f32` gives the same value back.
pub(super) fn f32_to_json(x: f32) -> Value {
    if x.is_finite() {
        float_to_json(x.to_string().parse().unwrap_or(f64::from(x)))
    } else {
        float_to_json(f64::from(x))
    }
}

/// Writes `n` as LEB128: seven bits a byte, low bits first, the high bit set on all but the
/// last byte.
pub(super) fn write_varint(out: &mut Vec<u8>, mut n: u128) {
    while n >= 0x80 {
        out.push(n.to_le_bytes()[0] | 0x80);
        n >>= 7;
    }
    out.push(n.to_le_bytes()[0]);
}
