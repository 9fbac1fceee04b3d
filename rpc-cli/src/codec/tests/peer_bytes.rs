//! Bytes from a peer: truncated, padded, lying about lengths or simply wrong.

use serde_json::json;
use serde_reflection::{ContainerFormat, Format, Registry};

use super::super::{CodecError, MAX_DEPTH, MAX_ZERO_SIZED_ELEMENTS};
use super::*;

fn decode_error(bytes: &[u8], format: &Format) -> CodecError {
    match decode(bytes, format, &Registry::new(), "v") {
        Ok(value) => panic!("{bytes:?} decoded as {value}; expected an error"),
        Err(e) => e,
    }
}

#[test]
fn every_truncation_of_a_drawing_is_an_error() -> TestResult {
    let (format, registry) = trace::<Drawing>();
    let bytes = postcard::to_stdvec(&drawing())?;
    for len in 0..bytes.len() {
        let result = decode(&bytes[..len], &format, &registry, "drawing");
        assert!(
            result.is_err(),
            "a prefix of {len} bytes decoded: {result:?}"
        );
    }
    Ok(())
}

#[test]
fn truncation_names_where_the_input_ended() -> TestResult {
    let (format, registry) = trace::<Point>();
    let bytes = postcard::to_stdvec(&Point { x: 1, y: 1000 })?;
    let err = decode(&bytes[..2], &format, &registry, "p");
    let expected = CodecError::UnexpectedEnd {
        path: "p.y".to_owned(),
        needed: 1,
        remaining: 0,
    };
    assert_eq!(err, Err(expected));
    assert_eq!(
        decode_error(&[0, 0], &Format::F32).to_string(),
        "v: input ends early: 4 more bytes needed, 2 left"
    );
    Ok(())
}

#[test]
fn trailing_bytes_are_refused() -> TestResult {
    let (format, registry) = trace::<Drawing>();
    let mut bytes = postcard::to_stdvec(&drawing())?;
    bytes.push(0);
    let err = decode(&bytes, &format, &registry, "drawing");
    assert_eq!(err, Err(CodecError::TrailingBytes { count: 1 }));
    assert_eq!(
        decode_error(&[1, 2, 3], &Format::U8).to_string(),
        "2 bytes left after the value"
    );
    Ok(())
}

#[test]
fn lengths_beyond_the_input_are_refused_before_allocating() {
    let err = decode_error(&[5, b'a', b'b', b'c'], &Format::Str);
    let expected = CodecError::LengthTooLarge {
        path: "v".to_owned(),
        length: 5,
        remaining: 3,
    };
    assert_eq!(err, expected);
    assert_eq!(
        err.to_string(),
        "v: declared length 5 exceeds the 3 bytes left"
    );
    // 2^63 elements: refused at once, nothing reserved.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    let err = decode_error(&huge, &Format::Seq(Box::new(Format::U64)));
    assert_eq!(
        err,
        CodecError::LengthTooLarge {
            path: "v".to_owned(),
            length: 1 << 63,
            remaining: 0
        }
    );
    let err = decode_error(&[3, 1, 2], &Format::Bytes);
    assert!(
        matches!(
            err,
            CodecError::LengthTooLarge {
                length: 3,
                remaining: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let map = Format::Map {
        key: Box::new(Format::Str),
        value: Box::new(Format::U8),
    };
    let err = decode_error(&[200, 1], &map);
    assert!(
        matches!(
            err,
            CodecError::LengthTooLarge {
                length: 200,
                remaining: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn zero_sized_elements_have_their_own_limit() -> TestResult {
    let units = Format::Seq(Box::new(Format::Unit));
    let value = decode(
        &postcard::to_stdvec(&vec![(); 3])?,
        &units,
        &Registry::new(),
        "v",
    )?;
    assert_eq!(value, json!([null, null, null]));
    let too_many = postcard::to_stdvec(&vec![(); MAX_ZERO_SIZED_ELEMENTS + 1])?;
    let err = decode_error(&too_many, &units);
    assert!(matches!(err, CodecError::TooManyElements { .. }), "{err:?}");
    Ok(())
}

#[test]
fn malformed_scalars_are_refused() {
    assert_eq!(
        decode_error(&[2], &Format::Bool).to_string(),
        "v: invalid bool byte 0x02"
    );
    let option = Format::Option(Box::new(Format::U8));
    assert_eq!(
        decode_error(&[7, 1], &option).to_string(),
        "v: invalid Option tag byte 0x07"
    );
    assert_eq!(
        decode_error(&[2, 0xc3, 0x28], &Format::Str).to_string(),
        "v: invalid UTF-8 in String"
    );
    assert_eq!(
        decode_error(&[2, b'a', b'b'], &Format::Char).to_string(),
        "v: a char must hold exactly one character, got \"ab\""
    );
    assert!(matches!(
        decode_error(&[0], &Format::Char),
        CodecError::BadChar { .. }
    ));
}

#[test]
fn varints_are_as_strict_as_postcard() -> TestResult {
    // u16: at most three bytes, the last carrying two bits.
    assert_eq!(
        decode(&[0xff, 0xff, 0x03], &Format::U16, &Registry::new(), "v")?,
        json!(65535)
    );
    assert_eq!(
        decode_error(&[0xff, 0xff, 0x04], &Format::U16).to_string(),
        "v: invalid varint for u16"
    );
    assert!(postcard::from_bytes::<u16>(&[0xff, 0xff, 0x04]).is_err());
    // u32: five bytes at most.
    let long = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    assert!(matches!(
        decode_error(&long, &Format::U32),
        CodecError::BadVarint { .. }
    ));
    assert!(postcard::from_bytes::<u32>(&long).is_err());
    // i64 from zigzag: the largest varint is i64::MIN.
    let min = postcard::to_stdvec(&i64::MIN)?;
    assert_eq!(
        decode(&min, &Format::I64, &Registry::new(), "v")?,
        json!(i64::MIN)
    );
    Ok(())
}

#[test]
fn unknown_variant_indexes_are_refused() -> TestResult {
    let (format, registry) = trace::<Shape>();
    let err = decode(&[9], &format, &registry, "shape");
    let message = err.map_err(|e| e.to_string());
    assert_eq!(
        message,
        Err("shape: variant index 9 is not a variant of enum Shape".to_owned())
    );
    Ok(())
}

#[test]
fn duplicate_keys_are_refused() {
    let map = Format::Map {
        key: Box::new(Format::Str),
        value: Box::new(Format::U8),
    };
    let bytes = [2, 1, b'a', 1, 1, b'a', 2];
    assert_eq!(
        decode_error(&bytes, &map).to_string(),
        "v: duplicate map key \"a\""
    );
}

#[test]
fn deep_recursion_stops_at_the_depth_limit() -> TestResult {
    let (format, registry) = trace::<List>();
    let mut list = List::Nil;
    // One level for each `Cons` and one for the `Nil`: exactly at the limit.
    for _ in 0..(MAX_DEPTH - 1) {
        list = List::Cons(Box::new(list));
    }
    round_trip(&list)?;
    list = List::Cons(Box::new(list));
    let bytes = postcard::to_stdvec(&list)?;
    let err = decode(&bytes, &format, &registry, "list");
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
    // A type that contains itself with nothing in between never reads a byte.
    let looping = Registry::from([(
        "Loop".to_owned(),
        ContainerFormat::TupleStruct(vec![Format::TypeName("Loop".to_owned())]),
    )]);
    let err = decode(&[], &Format::TypeName("Loop".to_owned()), &looping, "v");
    assert!(matches!(err, Err(CodecError::TooDeep { .. })), "{err:?}");
    Ok(())
}

#[test]
fn arbitrary_bytes_never_panic() {
    let (format, registry) = trace::<Drawing>();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20_000 {
        let len = round % 64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let _ = decode(&bytes, &format, &registry, "v");
    }
}
