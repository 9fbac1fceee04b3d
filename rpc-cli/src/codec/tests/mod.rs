//! Codec tests: real Rust values encoded by postcard are the reference for every byte.

mod amplification;
mod json_errors;
mod peer_bytes;
mod round_trip;
mod words;

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_reflection::{Format, Registry, Tracer, TracerConfig};

use super::{decode, encode};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Debug, Clone)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
enum Shape {
    Empty,
    Circle { center: Point, radius: f64 },
    Square(f32),
    Line(Point, Point),
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
struct UserId(u32);

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
struct Marker;

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
struct Pair(i64, bool);

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Drawing {
    name: String,
    owner: UserId,
    shapes: Vec<Shape>,
    tags: BTreeMap<String, u32>,
    grid: Vec<Vec<i8>>,
    note: Option<String>,
    by_id: BTreeMap<u16, Point>,
    marker: Marker,
    pair: Pair,
    initial: char,
    rgb: [u16; 3],
    nothing: (),
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
struct Ints {
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: u128,
    f: i8,
    g: i16,
    h: i32,
    i: i64,
    j: i128,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
enum List {
    Nil,
    Cons(Box<List>),
}

fn drawing() -> Drawing {
    Drawing {
        name: "plan é".to_owned(),
        owner: UserId(7),
        shapes: vec![
            Shape::Empty,
            Shape::Circle {
                center: Point { x: -1, y: 2 },
                radius: 0.5,
            },
            Shape::Square(1.25),
            Shape::Line(Point { x: 0, y: 0 }, Point { x: 300, y: -300 }),
        ],
        tags: BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 70000)]),
        grid: vec![vec![], vec![-128, 127], vec![0]],
        note: None,
        by_id: BTreeMap::from([(3, Point { x: 1, y: 1 })]),
        marker: Marker,
        pair: Pair(-5, true),
        initial: 'π',
        rgb: [0, 128, 65535],
        nothing: (),
    }
}

/// The format of `T` and the registry of the types it names, as serde-reflection traces them.
///
/// Enums inside `T` are traced first: tracing `T` alone would meet only their first variant.
fn trace<T: DeserializeOwned>() -> (Format, Registry) {
    let mut tracer = Tracer::new(TracerConfig::default());
    tracer.trace_simple_type::<Shape>().expect("Shape traces");
    tracer.trace_simple_type::<List>().expect("List traces");
    let (format, _) = tracer.trace_simple_type::<T>().expect("type traces");
    (format, tracer.registry().expect("registry is complete"))
}

/// Decodes postcard's encoding of `value` to JSON, encodes that JSON back, and checks that the
/// bytes are postcard's and that postcard reads them as `value`. Returns the JSON.
fn round_trip<T>(value: &T) -> Result<Value, Box<dyn std::error::Error>>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let (format, registry) = trace::<T>();
    let bytes = postcard::to_stdvec(value)?;
    let json = decode(&bytes, &format, &registry, "value")?;
    let again = encode(&json, &format, &registry, "value")?;
    assert_eq!(again, bytes, "re-encoding {json} differs from postcard");
    assert_eq!(&postcard::from_bytes::<T>(&again)?, value);
    Ok(json)
}

/// The message of the error that encoding `json` as `T` gives.
fn encode_error<T: DeserializeOwned>(json: &Value) -> String {
    let (format, registry) = trace::<T>();
    match encode(json, &format, &registry, "value") {
        Ok(bytes) => panic!("{json} encoded as {bytes:?}; expected an error"),
        Err(e) => e.to_string(),
    }
}
