//! Command-line words become JSON values of the argument's type.

use serde_json::{json, Value};
use serde_reflection::{Format, Registry};

use super::super::{encode_args, word_to_json, CodecError};
use super::*;

fn word(word: &str, format: &Format) -> Result<Value, CodecError> {
    word_to_json(word, format, &Registry::new(), "a")
}

fn word_error(text: &str, format: &Format) -> String {
    match word(text, format) {
        Ok(value) => panic!("{text} read as {value}; expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn number_types_read_numbers() -> TestResult {
    assert_eq!(word("-5", &Format::I64)?, json!(-5));
    assert_eq!(word("255", &Format::U8)?, json!(255));
    assert_eq!(word("18446744073709551615", &Format::U64)?, json!(u64::MAX));
    assert_eq!(
        word("340282366920938463463374607431768211455", &Format::U128)?,
        json!("340282366920938463463374607431768211455")
    );
    assert_eq!(word("-3", &Format::I128)?, json!("-3"));
    assert_eq!(word("2.5", &Format::F64)?, json!(2.5));
    assert_eq!(word("7", &Format::F32)?, json!(7.0));
    assert_eq!(word("inf", &Format::F64)?, json!("inf"));
    Ok(())
}

#[test]
fn number_types_refuse_other_words_by_name() {
    assert_eq!(
        word_error("two", &Format::I64),
        "a: expected i64, got \"two\""
    );
    assert_eq!(
        word_error("300", &Format::U8),
        "a: 300 is out of range for u8 (0 to 255)"
    );
    assert_eq!(
        word_error("-1", &Format::U32),
        "a: -1 is out of range for u32 (0 to 4294967295)"
    );
    assert_eq!(
        word_error("99999999999999999999999999999999999999999", &Format::I128),
        "a: 99999999999999999999999999999999999999999 is out of range for i128 \
         (-170141183460469231731687303715884105728 to 170141183460469231731687303715884105727)"
    );
    assert_eq!(
        word_error("1.5", &Format::I32),
        "a: expected i32, got \"1.5\""
    );
    assert_eq!(word_error("", &Format::U8), "a: expected u8, got \"\"");
    assert_eq!(
        word_error("abc", &Format::F64),
        "a: expected f64, got \"abc\""
    );
    assert_eq!(
        word_error("1e39", &Format::F32),
        "a: 1e39 is out of range for f32 (-3.4028235e38 to 3.4028235e38)"
    );
    // Too large for an f64 too: not sent as infinity.
    assert_eq!(
        word_error("1e309", &Format::F64),
        "a: 1e309 is out of range for f64 (-1.7976931348623157e308 to 1.7976931348623157e308)"
    );
    assert_eq!(
        word_error("-1e309", &Format::F32),
        "a: -1e309 is out of range for f32 (-3.4028235e38 to 3.4028235e38)"
    );
}

#[test]
fn infinity_is_taken_when_it_is_written() -> TestResult {
    for (text, expected) in [("inf", "inf"), ("-Infinity", "-inf"), ("+INF", "inf")] {
        assert_eq!(word(text, &Format::F64)?, json!(expected), "{text}");
        assert_eq!(word(text, &Format::F32)?, json!(expected), "{text}");
    }
    Ok(())
}

#[test]
fn strings_take_the_word_as_it_is() -> TestResult {
    assert_eq!(word("hello world", &Format::Str)?, json!("hello world"));
    assert_eq!(word("42", &Format::Str)?, json!("42"));
    assert_eq!(word("\"quoted\"", &Format::Str)?, json!("\"quoted\""));
    assert_eq!(word("é", &Format::Char)?, json!("é"));
    Ok(())
}

#[test]
fn other_types_read_json() -> TestResult {
    let (point, registry) = trace::<Point>();
    let value = word_to_json(r#"{"x": 1, "y": -2}"#, &point, &registry, "p")?;
    assert_eq!(value, json!({"x": 1, "y": -2}));
    assert_eq!(word("true", &Format::Bool)?, json!(true));
    assert_eq!(
        word("null", &Format::Option(Box::new(Format::U8)))?,
        json!(null)
    );
    assert_eq!(
        word("[1,2]", &Format::Seq(Box::new(Format::U8)))?,
        json!([1, 2])
    );
    let err = word_to_json("{x: 1", &point, &registry, "p").map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("p: expected Point, got \"{x: 1\", which is not valid JSON \
             (key must be a string at line 1 column 2)"
            .to_owned())
    );
    Ok(())
}

#[test]
fn newtypes_read_as_what_they_wrap() -> TestResult {
    let (user, registry) = trace::<UserId>();
    assert_eq!(word_to_json("42", &user, &registry, "id")?, json!(42));
    let err = word_to_json("bob", &user, &registry, "id").map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("id: expected UserId (u32), got \"bob\"".to_owned())
    );
    Ok(())
}

#[test]
fn words_encode_as_postcard_encodes_the_arguments() -> TestResult {
    let (point, registry) = trace::<Point>();
    let args = Format::Tuple(vec![Format::Str, Format::I64, point]);
    let formats = super::super::argument_formats(&args);
    let words = ["two words", "-7", r#"{"x":3,"y":4}"#];
    let values = words
        .iter()
        .zip(formats)
        .map(|(w, f)| word_to_json(w, f, &registry, "arg"))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = encode_args(&values, &["name", "n", "at"], &args, &registry)?;
    let expected = postcard::to_stdvec(&("two words", -7i64, Point { x: 3, y: 4 }))?;
    assert_eq!(bytes, expected);
    Ok(())
}

/// A float given as JSON (with `--json`, or inside an object) is sent as the `f64` nearest to
/// what was written, as a bare word is: `serde_json`'s default parser rounds some of them one
/// step off (this one was sent as 51.24817837550541).
#[test]
fn floats_in_json_keep_every_digit() -> TestResult {
    use super::super::parse_json;
    let text = "51.248178375505404";
    let exact: f64 = text.parse()?;
    let format = Format::Tuple(vec![Format::F64]);
    for value in [
        parse_json(&format!("[{text}]"), &format, "a")?,
        json!([word(text, &Format::F64)?]),
    ] {
        let bytes = encode(&value, &format, &Registry::new(), "a")?;
        assert_eq!(bytes, exact.to_le_bytes(), "{value}");
    }
    Ok(())
}
