//! Arbitrary bytes decoded as a frame header (`rpc_core::protocol::Header`).
//!
//! Oracles:
//! * decoding never panics, and every error type's message formats;
//! * a header that decodes re-encodes to at most the bytes it was decoded from (the encoding
//!   is the shortest one), and those bytes decode to an equal header with nothing left over;
//! * the depth-guarded decoder that reads arguments and replies agrees with postcard on the
//!   same bytes: the same value, `TrailingBytes` with the count postcard leaves over, or
//!   `Malformed` where postcard fails;
//! * the engines' header codec (hand-written for the kinds of every call) agrees with postcard:
//!   the same header and rest where postcard decodes, an error where it fails, and the same
//!   bytes when the header is encoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::__private::{decode_args, decode_header, encode_header, DecodeLimits, DispatchError};
use rpc_core::protocol::{Header, ReplyStatus};
use rpc_core::DecodeError;

fuzz_target!(|data: &[u8]| {
    let plain = postcard::take_from_bytes::<Header>(data);
    match (&plain, decode_header(data)) {
        (Ok(plain), Ok(ours)) => assert_eq!(plain, &ours, "the engines' decoder"),
        (Err(_), Err(_)) => {}
        (plain, ours) => panic!("postcard decoded {plain:?}, the engines' decoder {ours:?}"),
    }
    if let Ok((header, rest)) = &plain {
        let used = data.len() - rest.len();
        let encoded = postcard::to_stdvec(header).expect("a decoded header encodes");
        let mut ours = Vec::new();
        encode_header(header, &mut ours).expect("the engines' encoder encodes it");
        assert_eq!(ours, encoded, "the engines' encoder");
        assert!(
            encoded.len() <= used,
            "{header:?} re-encodes to {} bytes, decoded from {used}",
            encoded.len()
        );
        let (again, left) =
            postcard::take_from_bytes::<Header>(&encoded).expect("a re-encoded header decodes");
        assert_eq!(&again, header, "round trip");
        assert!(
            left.is_empty(),
            "{} bytes left after a re-encoded header",
            left.len()
        );
        format_errors(header);
    }

    let guarded = decode_args::<Header>(data, &DecodeLimits::default());
    match (&plain, guarded) {
        (Ok((header, [])), Ok(value)) => assert_eq!(&value, header),
        (Ok((_, rest)), Err(DispatchError::BadArguments(DecodeError::TrailingBytes { count }))) => {
            assert_eq!(count, rest.len(), "trailing byte count");
        }
        (Err(_), Err(DispatchError::BadArguments(DecodeError::Malformed(_)))) => {}
        (plain, guarded) => {
            panic!("postcard decoded {plain:?}, the guarded decoder {guarded:?}")
        }
    }
});

/// Formats what a peer's header can carry as errors, as a log line would.
fn format_errors(header: &Header) {
    let text = match header {
        Header::Reject(rejection) => rejection.to_string(),
        Header::Reply {
            status: ReplyStatus::Failed(error),
            ..
        } => error.to_string(),
        Header::StreamEnd {
            error: Some(error), ..
        } => error.to_string(),
        Header::Goodbye { reason } => reason.to_string(),
        _ => String::new(),
    };
    std::hint::black_box(text);
}
