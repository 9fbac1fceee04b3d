//! Replies that would decode into far more than they weigh: values of zero bytes multiplied by
//! a hostile registry, long names repeated, byte buffers past the ceiling, and types that take
//! long to look through asked about once per byte.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

use super::super::{CodecError, MAX_VALUES};
use super::*;

/// `T0 { a: T1, b: T1 }`, `T1 { a: T2, b: T2 }`, ... down to the unit struct `T{levels}`:
/// one value of `T0` is 2^levels values, all of zero bytes.
fn doubling_registry(levels: usize) -> Registry {
    let mut registry = Registry::new();
    for level in 0..levels {
        let next = Format::TypeName(format!("T{}", level + 1));
        let fields = ["a", "b"].map(|name| Named {
            name: name.to_owned(),
            value: next.clone(),
        });
        registry.insert(
            format!("T{level}"),
            ContainerFormat::Struct(fields.to_vec()),
        );
    }
    registry.insert(format!("T{levels}"), ContainerFormat::UnitStruct);
    registry
}

#[test]
fn a_registry_that_multiplies_empty_values_is_stopped() -> TestResult {
    let root = Format::TypeName("T0".to_owned());
    // Small enough to decode: 2^5 leaves.
    let small = decode(&[], &root, &doubling_registry(5), "v")?;
    assert_eq!(small["a"]["b"]["a"]["b"], json!({"a": null, "b": null}));
    // 2^60 leaves would never finish.
    let registry = doubling_registry(60);
    let err = decode(&[], &root, &registry, "v");
    assert!(
        matches!(err, Err(CodecError::TooManyValues { limit: 65536, .. })),
        "{err:?}"
    );
    // Zero-sized (each of its 61 types looked through once), so a sequence of three may be
    // declared in one byte; its values stop at the same budget (8 values for the byte).
    let seq = Format::Seq(Box::new(root));
    let err = decode(&[3], &seq, &registry, "v");
    assert!(
        matches!(err, Err(CodecError::TooManyValues { limit: 65544, .. })),
        "{err:?}"
    );
    Ok(())
}

/// A registry whose names are long cannot make each byte of input copy one: a variant named
/// with 64 KiB, in a sequence of 4,096 one-byte elements, would copy 256 MiB into the output.
#[test]
fn long_names_repeated_by_short_input_are_stopped() -> TestResult {
    let mut registry = Registry::new();
    let long = "x".repeat(1 << 16);
    registry.insert(
        "E".to_owned(),
        ContainerFormat::Enum(BTreeMap::from([(
            0,
            Named {
                name: long.clone(),
                value: VariantFormat::Unit,
            },
        )])),
    );
    let seq = Format::Seq(Box::new(Format::TypeName("E".to_owned())));
    // A few of them decode.
    let few = decode(&[2, 0, 0], &seq, &registry, "v")?;
    assert_eq!(few, json!([long.clone(), long]));
    let mut input = vec![0x80, 0x20]; // 4,096 as a varint
    input.extend(std::iter::repeat_n(0, 4096));
    let err = decode(&input, &seq, &registry, "v");
    assert!(
        matches!(err, Err(CodecError::TooManyValues { .. })),
        "{}",
        match &err {
            Ok(_) => "decoded".to_owned(),
            Err(e) => e.to_string(),
        }
    );
    Ok(())
}

/// A fixed-size array of a billion billion units in a reply of 1,000 bytes: decoding stops at
/// 8 values per byte and 65,536 more (it allowed 64 per byte, which made a reply of 1 MiB about
/// 5 GB of JSON values).
#[test]
fn an_array_of_units_decodes_into_8_values_per_byte_at_most() {
    let format = Format::TupleArray {
        content: Box::new(Format::Unit),
        size: 1 << 60,
    };
    let err = decode(&[0; 1000], &format, &Registry::new(), "v");
    assert!(
        matches!(err, Err(CodecError::TooManyValues { limit, .. }) if limit == 8 * 1000 + 65536),
        "{err:?}"
    );
}

/// Every byte of a byte buffer is a JSON value: a buffer of more than [`MAX_VALUES`] bytes is
/// refused, whatever the reply's size (it decoded into 72 bytes of memory per byte).
#[test]
fn a_reply_never_decodes_into_more_than_max_values() -> TestResult {
    let len = MAX_VALUES + 1;
    let mut input = postcard::to_stdvec(&(len as u64))?;
    input.resize(input.len() + len, 7);
    let err = decode(&input, &Format::Bytes, &Registry::new(), "v");
    assert!(
        matches!(err, Err(CodecError::TooManyValues { limit, .. }) if limit == MAX_VALUES),
        "{:?}",
        err.map(|_| "decoded")
    );
    // A smaller one decodes.
    let small = [3, 7, 7, 7];
    assert_eq!(
        decode(&small, &Format::Bytes, &Registry::new(), "v")?,
        json!([7, 7, 7])
    );
    Ok(())
}

/// 262,144 empty sequences of a type that takes 4,096 steps to look through, named or not:
/// each format is looked through once per decode, not once per sequence (a billion steps,
/// minutes of work for a reply of 256 KiB).
#[test]
fn each_type_is_looked_through_once_per_decode() -> TestResult {
    fn named() -> (Registry, Format) {
        (doubling_registry(12), Format::TypeName("T0".to_owned()))
    }
    fn unnamed() -> (Registry, Format) {
        (Registry::new(), Format::Tuple(vec![Format::Unit; 4000]))
    }
    empty_sequences_of(named)?;
    empty_sequences_of(unnamed)
}

/// Decodes 262,144 empty sequences of the element `shape` gives, on a thread of its own, so
/// that a decode that does not end fails the test rather than holding it.
fn empty_sequences_of(shape: fn() -> (Registry, Format)) -> TestResult {
    const SEQUENCES: usize = 1 << 18;
    let mut input = postcard::to_stdvec(&(SEQUENCES as u64))?;
    input.resize(input.len() + SEQUENCES, 0);
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Made here: formats are not `Send`.
        let (registry, element) = shape();
        let format = Format::Seq(Box::new(Format::Seq(Box::new(element))));
        let decoded = decode(&input, &format, &registry, "v").map(|value| match value {
            Value::Array(items) => items.len(),
            _ => 0,
        });
        let _ = done.send(decoded);
    });
    let decoded = result
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "the decode did not end within two minutes")?;
    assert_eq!(decoded?, SEQUENCES);
    Ok(())
}
