//! JSON that does not fit its type is refused with a message naming path, type and value.

use serde_json::json;
use serde_reflection::{ContainerFormat, Format, Registry};

use super::super::{encode_args, CodecError, MAX_DEPTH};
use super::*;

#[test]
fn out_of_range_integers_are_refused_at_every_width() {
    let cases = [
        ("a", json!(256), "value.a: 256 is out of range for u8 (0 to 255)"),
        ("a", json!(-1), "value.a: -1 is out of range for u8 (0 to 255)"),
        ("b", json!(65536), "value.b: 65536 is out of range for u16 (0 to 65535)"),
        ("c", json!(4294967296u64), "value.c: 4294967296 is out of range for u32 (0 to 4294967295)"),
        ("d", json!(-1), "value.d: -1 is out of range for u64 (0 to 18446744073709551615)"),
        (
            "d",
            json!(18446744073709551616.0),
            "value.d: 1.8446744073709552e+19 is out of range for u64 (0 to 18446744073709551615)",
        ),
        (
            "e",
            json!("340282366920938463463374607431768211456"),
            "value.e: \"340282366920938463463374607431768211456\" is out of range for u128 \
             (0 to 340282366920938463463374607431768211455)",
        ),
        ("e", json!(-1), "value.e: -1 is out of range for u128 (0 to 340282366920938463463374607431768211455)"),
        ("f", json!(128), "value.f: 128 is out of range for i8 (-128 to 127)"),
        ("f", json!(-129), "value.f: -129 is out of range for i8 (-128 to 127)"),
        ("g", json!(32768), "value.g: 32768 is out of range for i16 (-32768 to 32767)"),
        ("h", json!(-2147483649i64), "value.h: -2147483649 is out of range for i32 (-2147483648 to 2147483647)"),
        (
            "i",
            json!(9223372036854775808u64),
            "value.i: 9223372036854775808 is out of range for i64 (-9223372036854775808 to 9223372036854775807)",
        ),
        (
            "j",
            json!("-170141183460469231731687303715884105729"),
            "value.j: \"-170141183460469231731687303715884105729\" is out of range for i128 \
             (-170141183460469231731687303715884105728 to 170141183460469231731687303715884105727)",
        ),
    ];
    let zero =
        json!({"a": 0, "b": 0, "c": 0, "d": 0, "e": "0", "f": 0, "g": 0, "h": 0, "i": 0, "j": "0"});
    for (field, bad, message) in cases {
        let mut value = zero.clone();
        value[field] = bad;
        assert_eq!(encode_error::<Ints>(&value), message);
    }
}

#[test]
fn fractions_and_strings_are_not_integers() {
    assert_eq!(
        encode_error::<i32>(&json!(1.5)),
        "value: expected i32, got 1.5"
    );
    assert_eq!(
        encode_error::<i32>(&json!(3.0)),
        "value: expected i32, got 3.0"
    );
    assert_eq!(
        encode_error::<u32>(&json!("7")),
        "value: expected u32, got \"7\""
    );
    assert_eq!(
        encode_error::<u128>(&json!("seven")),
        "value: expected u128, got \"seven\""
    );
}

#[test]
fn floats_beyond_f32_are_refused() {
    assert_eq!(
        encode_error::<f32>(&json!(1e39)),
        "value: 1e+39 is out of range for f32 (-3.4028235e38 to 3.4028235e38)"
    );
    assert_eq!(
        encode_error::<f64>(&json!("1.5")),
        "value: expected f64, got \"1.5\""
    );
}

#[test]
fn errors_name_the_path_inside_arguments() {
    let (point, registry) = trace::<Shape>();
    let args = Format::Tuple(vec![Format::U8, point]);
    let values = [
        json!(1),
        json!({"Line": [{"x": 0, "y": 0}, {"x": "a", "y": 2}]}),
    ];
    let err = encode_args(&values, &[] as &[&str], &args, &registry);
    let message = err.map_err(|e| e.to_string());
    assert_eq!(
        message,
        Err("args[1].Line[1].x: expected i32, got \"a\"".to_owned())
    );
    let err = encode_args(&values, &["count", "shape"], &args, &registry);
    let message = err.map_err(|e| e.to_string());
    assert_eq!(
        message,
        Err("shape.Line[1].x: expected i32, got \"a\"".to_owned())
    );
}

#[test]
fn argument_count_must_match() {
    let registry = Registry::new();
    let args = Format::Tuple(vec![Format::I64, Format::I64]);
    let err = encode_args(&[json!(1)], &["a", "b"], &args, &registry);
    assert_eq!(
        err,
        Err(CodecError::ArgumentCount {
            expected: 2,
            given: 1
        })
    );
}

#[test]
fn struct_shapes_are_checked() {
    assert_eq!(
        encode_error::<Point>(&json!({"x": 1})),
        "value: missing field `y` of struct Point"
    );
    assert_eq!(
        encode_error::<Point>(&json!({"x": 1, "y": 2, "z": 3})),
        "value: unknown field `z` of struct Point, which has: x, y"
    );
    assert_eq!(
        encode_error::<Point>(&json!([1, 2])),
        "value: expected struct Point, got [1,2]"
    );
    assert_eq!(
        encode_error::<Pair>(&json!([1])),
        "value: expected Pair with 2 elements, got 1"
    );
    assert_eq!(
        encode_error::<Marker>(&json!(1)),
        "value: expected unit struct Marker (null), got 1"
    );
    assert_eq!(
        encode_error::<(u8, u8)>(&json!([1, 2, 3])),
        "value: expected (u8, u8) with 2 elements, got 3"
    );
    // serde writes arrays as tuples.
    assert_eq!(
        encode_error::<[u16; 3]>(&json!([1])),
        "value: expected (u16, u16, u16) with 3 elements, got 1"
    );
    let array = Format::TupleArray {
        content: Box::new(Format::U16),
        size: 3,
    };
    let err = encode(&json!([1]), &array, &Registry::new(), "value").map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("value: expected [u16; 3] with 3 elements, got 1".to_owned())
    );
}

#[test]
fn enum_shapes_are_checked() {
    assert_eq!(
        encode_error::<Shape>(&json!("Triangle")),
        "value: unknown variant `Triangle` of enum Shape, which has: Empty, Circle, Square, Line"
    );
    assert_eq!(
        encode_error::<Shape>(&json!("Square")),
        "value: expected {\"Square\": ...} (variant Square of enum Shape has content), got \"Square\""
    );
    assert_eq!(
        encode_error::<Shape>(&json!({"Empty": 1})),
        "value.Empty: expected unit variant Empty of enum Shape (null), got 1"
    );
    assert_eq!(
        encode_error::<Shape>(&json!({"Circle": {"radius": 1.0}})),
        "value.Circle: missing field `center` of variant Circle of enum Shape"
    );
    assert_eq!(
        encode_error::<Shape>(&json!({"Empty": null, "Square": 1})),
        "value: expected enum Shape, got {\"Empty\":null,\"Square\":1}"
    );
}

#[test]
fn collections_and_strings_are_checked() {
    assert_eq!(
        encode_error::<Vec<u8>>(&json!([1, 300])),
        "value[1]: 300 is out of range for u8 (0 to 255)"
    );
    assert_eq!(
        encode_error::<String>(&json!(5)),
        "value: expected String, got 5"
    );
    assert_eq!(
        encode_error::<char>(&json!("ab")),
        "value: expected char, got \"ab\""
    );
    assert_eq!(
        encode_error::<bool>(&json!("true")),
        "value: expected bool, got \"true\""
    );
    assert_eq!(
        encode_error::<Option<u8>>(&json!(256)),
        "value: 256 is out of range for u8 (0 to 255)"
    );
    assert_eq!(
        encode_error::<BTreeMap<u16, u8>>(&json!({"x": 1})),
        "value[\"x\"]: expected u16, got \"x\""
    );
    assert_eq!(
        encode_error::<BTreeMap<u16, u8>>(&json!({"7": 1000})),
        "value[\"7\"]: 1000 is out of range for u8 (0 to 255)"
    );
    assert_eq!(
        encode_error::<BTreeMap<Point, u8>>(&json!({"a": 1})),
        "value: expected Map<Point, u8>, got {\"a\":1}"
    );
    let registry = Registry::new();
    let err = encode(&json!([1, 256]), &Format::Bytes, &registry, "blob");
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("blob[1]: 256 is out of range for u8 (0 to 255)".to_owned())
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(100);
    let message = encode_error::<u8>(&json!(long));
    assert_eq!(
        message,
        format!("value: expected u8, got \"{}...", "x".repeat(59))
    );
}

#[test]
fn unknown_types_and_cycles_are_errors_not_crashes() {
    let registry = Registry::new();
    let missing = Format::TypeName("Missing".to_owned());
    let err = encode(&json!(1), &missing, &registry, "v");
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("v: type `Missing` is not in the registry".to_owned())
    );
    // A newtype of itself: no value can end it, so the depth limit must.
    let registry = Registry::from([(
        "Loop".to_owned(),
        ContainerFormat::NewTypeStruct(Box::new(Format::TypeName("Loop".to_owned()))),
    )]);
    let err = encode(
        &json!(1),
        &Format::TypeName("Loop".to_owned()),
        &registry,
        "v",
    );
    assert!(
        matches!(
            err,
            Err(CodecError::TooDeep {
                limit: MAX_DEPTH,
                ..
            })
        ),
        "{err:?}"
    );
}
