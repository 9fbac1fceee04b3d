//! The description's JSON form and its rendering.

use serde_json::json;

use super::*;
use crate::fixture::calculator;

#[test]
fn renders_one_line_per_method_and_the_types() {
    let text = render(&calculator());
    let expected = "\
service Calculator (fingerprint 0x0000000000001234)

methods:
  add(a: i64, b: i64) -> i64                         # Adds two numbers.
  divide(a: i64, b: i64) -> Result<i64, MathError>   # Divides a by b.
  oneway log(line: String)
  stream ticks(every_ms: u64) -> u64                 # Counts up.
  plot(points: Vec<Point>)                           # Draws points.

types:
  enum MathError { DivideByZero, Overflow { at: i64 } }
  struct Point { x: i32, y: i32 }
";
    assert_eq!(text, expected);
}

#[test]
fn a_single_method_has_its_docs_three_spaces_after() {
    let mut describe = calculator();
    describe.methods.truncate(1);
    describe.registry.clear();
    let text = render(&describe);
    assert!(
        text.contains("\n  add(a: i64, b: i64) -> i64   # Adds two numbers.\n"),
        "{text}"
    );
}

#[test]
fn every_container_kind_renders_as_rust() {
    let unit = ContainerFormat::UnitStruct;
    assert_eq!(render_container("Marker", &unit), "struct Marker;");
    let newtype = ContainerFormat::NewTypeStruct(Box::new(Format::U32));
    assert_eq!(render_container("UserId", &newtype), "struct UserId(u32);");
    let pair =
        ContainerFormat::TupleStruct(vec![Format::I64, Format::Option(Box::new(Format::Str))]);
    assert_eq!(
        render_container("Pair", &pair),
        "struct Pair(i64, Option<String>);"
    );
    let shape = ContainerFormat::Enum(
        [
            (
                0,
                Named {
                    name: "Empty".to_owned(),
                    value: VariantFormat::Unit,
                },
            ),
            (
                1,
                Named {
                    name: "Square".to_owned(),
                    value: VariantFormat::NewType(Box::new(Format::F32)),
                },
            ),
            (
                2,
                Named {
                    name: "Line".to_owned(),
                    value: VariantFormat::Tuple(vec![Format::I8, Format::I8]),
                },
            ),
        ]
        .into(),
    );
    assert_eq!(
        render_container("Shape", &shape),
        "enum Shape { Empty, Square(f32), Line(i8, i8) }"
    );
}

#[test]
fn the_json_form_names_kinds_in_lowercase_and_round_trips() -> Result<(), serde_json::Error> {
    let describe = calculator();
    let value = serde_json::to_value(&describe)?;
    assert_eq!(value["methods"][2]["kind"], json!("oneway"));
    assert_eq!(
        value["methods"][0]["args"],
        json!([["a", "i64"], ["b", "i64"]])
    );
    assert_eq!(
        value["methods"][0]["args_format"],
        json!({"TUPLE": ["I64", "I64"]})
    );
    let back: Describe = serde_json::from_value(value)?;
    assert_eq!(back, describe);
    Ok(())
}

#[test]
fn methods_are_found_by_name() {
    let describe = calculator();
    assert_eq!(describe.method("divide").map(|m| m.id), Some(2));
    assert!(describe.method("sub").is_none());
    assert_eq!(describe.method_names(), "add, divide, log, ticks, plot");
}
