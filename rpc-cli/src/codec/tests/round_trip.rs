//! Values go from postcard to JSON and back to the same bytes.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::json;
use serde_reflection::{Format, Registry};

use super::*;

#[test]
fn a_drawing_round_trips_and_reads_as_serde_json_writes_it() -> TestResult {
    let value = drawing();
    let json = round_trip(&value)?;
    // serde_json writes f32 and u128 differently; this value has neither in those places.
    assert_eq!(json, serde_json::to_value(&value)?);
    assert_eq!(
        json["shapes"][1],
        json!({"Circle": {"center": {"x": -1, "y": 2}, "radius": 0.5}})
    );
    assert_eq!(json["shapes"][0], json!("Empty"));
    assert_eq!(json["by_id"], json!({"3": {"x": 1, "y": 1}}));
    Ok(())
}

#[test]
fn struct_fields_keep_their_declaration_order() -> TestResult {
    let json = round_trip(&drawing())?;
    let keys: Vec<&str> = json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys[..3], ["name", "owner", "shapes"]);
    Ok(())
}

#[test]
fn options_nested_sequences_and_maps_round_trip() -> TestResult {
    assert_eq!(round_trip(&Some(Some(3u8)))?, json!(3));
    assert_eq!(round_trip(&None::<Point>)?, json!(null));
    assert_eq!(
        round_trip(&vec![vec![vec![1u64]], vec![]])?,
        json!([[[1]], []])
    );
    let by_point = BTreeMap::from([(Point { x: 1, y: 2 }, true)]);
    // Keys without a string form are written as pairs.
    assert_eq!(round_trip(&by_point)?, json!([[{"x": 1, "y": 2}, true]]));
    let nested = BTreeMap::from([(-4i64, BTreeMap::from([('z', vec![Some(1.5f64), None])]))]);
    assert_eq!(round_trip(&nested)?, json!({"-4": {"z": [1.5, null]}}));
    Ok(())
}

#[test]
fn every_integer_width_round_trips_at_its_limits() -> TestResult {
    let max = Ints {
        a: u8::MAX,
        b: u16::MAX,
        c: u32::MAX,
        d: u64::MAX,
        e: u128::MAX,
        f: i8::MAX,
        g: i16::MAX,
        h: i32::MAX,
        i: i64::MAX,
        j: i128::MAX,
    };
    let min = Ints {
        a: 0,
        b: 0,
        c: 0,
        d: 0,
        e: 0,
        f: i8::MIN,
        g: i16::MIN,
        h: i32::MIN,
        i: i64::MIN,
        j: i128::MIN,
    };
    let mid = Ints {
        a: 128,
        b: 300,
        c: 1 << 21,
        d: 1 << 35,
        e: 1 << 70,
        f: -1,
        g: -300,
        h: -64,
        i: 63,
        j: -(1 << 100),
    };
    let json = round_trip(&max)?;
    assert_eq!(json["d"], json!(u64::MAX));
    assert_eq!(json["e"], json!("340282366920938463463374607431768211455"));
    let json = round_trip(&min)?;
    assert_eq!(json["i"], json!(i64::MIN));
    assert_eq!(json["j"], json!("-170141183460469231731687303715884105728"));
    let json = round_trip(&mid)?;
    assert_eq!(json["f"], json!(-1));
    Ok(())
}

#[test]
fn wide_integers_are_also_accepted_as_json_numbers() -> TestResult {
    let registry = Registry::new();
    assert_eq!(
        encode(&json!(5), &Format::U128, &registry, "v")?,
        postcard::to_stdvec(&5u128)?
    );
    assert_eq!(
        encode(&json!(-5), &Format::I128, &registry, "v")?,
        postcard::to_stdvec(&-5i128)?
    );
    Ok(())
}

#[test]
fn floats_round_trip_including_values_json_cannot_write() -> TestResult {
    assert_eq!(round_trip(&0.1f32)?, json!(0.1));
    assert_eq!(round_trip(&-2.5e-300f64)?, json!(-2.5e-300));
    assert_eq!(round_trip(&f64::INFINITY)?, json!("inf"));
    assert_eq!(round_trip(&f32::NEG_INFINITY)?, json!("-inf"));
    let registry = Registry::new();
    let nan = decode(
        &postcard::to_stdvec(&f64::NAN)?,
        &Format::F64,
        &registry,
        "v",
    )?;
    assert_eq!(nan, json!("NaN"));
    let bytes = encode(&nan, &Format::F64, &registry, "v")?;
    assert!(postcard::from_bytes::<f64>(&bytes)?.is_nan());
    Ok(())
}

#[test]
fn recursive_types_round_trip() -> TestResult {
    let list = List::Cons(Box::new(List::Cons(Box::new(List::Nil))));
    assert_eq!(round_trip(&list)?, json!({"Cons": {"Cons": "Nil"}}));
    Ok(())
}

/// Bytes written with `serialize_bytes`, as `serde_bytes` does.
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

#[test]
fn bytes_are_arrays_of_numbers() -> TestResult {
    let registry = Registry::new();
    let blob = Blob(vec![0, 1, 255]);
    let bytes = postcard::to_stdvec(&blob)?;
    assert_eq!(bytes, [3, 0, 1, 255]);
    let json = decode(&bytes, &Format::Bytes, &registry, "v")?;
    assert_eq!(json, json!([0, 1, 255]));
    assert_eq!(encode(&json, &Format::Bytes, &registry, "v")?, bytes);
    Ok(())
}

#[test]
fn unit_variants_may_also_be_written_as_objects() -> TestResult {
    let (format, registry) = trace::<Shape>();
    let bytes = encode(&json!({"Empty": null}), &format, &registry, "v")?;
    assert_eq!(bytes, postcard::to_stdvec(&Shape::Empty)?);
    Ok(())
}

#[test]
fn missing_option_fields_are_none() -> TestResult {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Search {
        text: String,
        limit: Option<u32>,
    }
    let (format, registry) = trace::<Search>();
    let bytes = encode(&json!({"text": "x"}), &format, &registry, "v")?;
    let expected = Search {
        text: "x".to_owned(),
        limit: None,
    };
    assert_eq!(bytes, postcard::to_stdvec(&expected)?);
    Ok(())
}

#[test]
fn take_from_bytes_returns_what_follows() -> TestResult {
    let registry = Registry::new();
    let (value, rest) = super::super::take_from_bytes(&[5, 9, 9], &Format::U8, &registry, "v")?;
    assert_eq!((value, rest), (json!(5), &[9u8, 9][..]));
    Ok(())
}
