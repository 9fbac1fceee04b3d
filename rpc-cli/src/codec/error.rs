//! What can go wrong converting between JSON and postcard.

/// Why a value could not be encoded or decoded.
///
/// `path` fields name where in the value the problem is: the name given to the codec (an
/// argument's name, `args[1]`, `result`) followed by struct fields and variants (`.x`) and
/// sequence, tuple and map positions (`[3]`). `expected` fields are type names as
/// [`type_name`](super::type_name) writes them; `given` fields are the offending JSON, shortened
/// when long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A JSON value does not have the shape the type needs.
    #[error("{path}: expected {expected}, got {given}")]
    Mismatch {
        /// Where the value is.
        path: String,
        /// The type expected there.
        expected: String,
        /// The JSON given.
        given: String,
    },
    /// A number does not fit its type.
    #[error("{path}: {given} is out of range for {expected} ({min} to {max})")]
    OutOfRange {
        /// Where the number is.
        path: String,
        /// The numeric type.
        expected: String,
        /// The number given.
        given: String,
        /// The smallest value of the type.
        min: String,
        /// The largest value of the type.
        max: String,
    },
    /// A command-line word is not valid JSON for a type that needs JSON.
    #[error("{path}: expected {expected}, got {given}, which is not valid JSON ({reason})")]
    InvalidJson {
        /// Where the word goes.
        path: String,
        /// The type expected there.
        expected: String,
        /// The word, quoted.
        given: String,
        /// What the JSON parser said.
        reason: String,
    },
    /// A JSON object lacks a field of the struct (only `Option` fields may be left out).
    #[error("{path}: missing field `{field}` of {expected}")]
    MissingField {
        /// Where the object is.
        path: String,
        /// The missing field.
        field: String,
        /// The struct.
        expected: String,
    },
    /// A JSON object has a field the struct does not have.
    #[error("{path}: unknown field `{field}` of {expected}, which has: {known}")]
    UnknownField {
        /// Where the object is.
        path: String,
        /// The field given.
        field: String,
        /// The struct.
        expected: String,
        /// The struct's fields, comma-separated.
        known: String,
    },
    /// An enum value names a variant the enum does not have.
    #[error("{path}: unknown variant `{variant}` of {expected}, which has: {known}")]
    UnknownVariant {
        /// Where the enum value is.
        path: String,
        /// The variant given.
        variant: String,
        /// The enum.
        expected: String,
        /// The enum's variants, comma-separated.
        known: String,
    },
    /// A JSON array has the wrong number of elements for a tuple or array type.
    #[error("{path}: expected {expected} with {expected_len} elements, got {given_len}")]
    WrongLength {
        /// Where the array is.
        path: String,
        /// The tuple or array type.
        expected: String,
        /// How many elements it has.
        expected_len: usize,
        /// How many were given.
        given_len: usize,
    },
    /// A call was given the wrong number of arguments.
    #[error("expected {expected} arguments, got {given}")]
    ArgumentCount {
        /// How many the method takes.
        expected: usize,
        /// How many were given.
        given: usize,
    },
    /// The input ends inside a value.
    #[error("{path}: input ends early: {needed} more bytes needed, {remaining} left")]
    UnexpectedEnd {
        /// Where decoding stopped.
        path: String,
        /// How many bytes the next item needs (at least).
        needed: usize,
        /// How many bytes were left.
        remaining: usize,
    },
    /// A string, byte string, sequence or map declares more content than the input holds.
    #[error("{path}: declared length {length} exceeds the {remaining} bytes left")]
    LengthTooLarge {
        /// Where the length is.
        path: String,
        /// The length declared.
        length: u64,
        /// How many bytes were left after it.
        remaining: usize,
    },
    /// A sequence or map of zero-sized elements declares more than
    /// [`MAX_ZERO_SIZED_ELEMENTS`](super::MAX_ZERO_SIZED_ELEMENTS).
    #[error("{path}: declared length {length} of zero-sized elements exceeds the limit {limit}")]
    TooManyElements {
        /// Where the length is.
        path: String,
        /// The length declared.
        length: u64,
        /// The limit.
        limit: usize,
    },
    /// Decoding would produce more values than its input can justify, or more than
    /// [`MAX_VALUES`](super::MAX_VALUES) (values that take no bytes nested by a hostile
    /// registry, names of hostile lengths repeated in the output, or a byte buffer longer than
    /// the ceiling).
    #[error("{path}: more than {limit} values for the input's size")]
    TooManyValues {
        /// Where the limit was reached.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// Bytes are left after the value.
    #[error("{count} bytes left after the value")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A varint is longer than its type allows or its value does not fit the type.
    #[error("{path}: invalid varint for {expected}")]
    BadVarint {
        /// Where the varint is.
        path: String,
        /// The type it encodes.
        expected: &'static str,
    },
    /// A bool or option tag byte is neither 0 nor 1.
    #[error("{path}: invalid {expected} byte {byte:#04x}")]
    BadTag {
        /// Where the byte is.
        path: String,
        /// `bool` or `Option tag`.
        expected: &'static str,
        /// The byte.
        byte: u8,
    },
    /// A string or char is not valid UTF-8.
    #[error("{path}: invalid UTF-8 in {expected}")]
    BadUtf8 {
        /// Where the string is.
        path: String,
        /// `String` or `char`.
        expected: &'static str,
    },
    /// A char does not hold exactly one character.
    #[error("{path}: a char must hold exactly one character, got {given}")]
    BadChar {
        /// Where the char is.
        path: String,
        /// What it held.
        given: String,
    },
    /// An enum's variant index is not one of its variants.
    #[error("{path}: variant index {index} is not a variant of {expected}")]
    UnknownVariantIndex {
        /// Where the enum value is.
        path: String,
        /// The index read.
        index: u32,
        /// The enum.
        expected: String,
    },
    /// A map written as a JSON object holds the same key twice.
    #[error("{path}: duplicate map key {key}")]
    DuplicateKey {
        /// Where the map is.
        path: String,
        /// The key.
        key: String,
    },
    /// A format names a type that the registry does not hold.
    #[error("{path}: type `{name}` is not in the registry")]
    UnknownType {
        /// Where the type is used.
        path: String,
        /// Its name.
        name: String,
    },
    /// A format is a variable that tracing left unresolved.
    #[error("{path}: the type's format is unresolved")]
    Unresolved {
        /// Where the format is used.
        path: String,
    },
    /// Values nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("{path}: nested deeper than {limit} levels")]
    TooDeep {
        /// Where the limit was reached.
        path: String,
        /// The limit.
        limit: usize,
    },
}
