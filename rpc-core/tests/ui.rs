//! Compile-time behaviour of `#[service]`: what compiles (and runs), and the spanned error for
//! each thing it rejects. Regenerate the `.stderr` files with `TRYBUILD=overwrite` and read every
//! one: the span must point at the token at fault.

// trybuild runs cargo, which does not exist where the Windows tests run (Wine).
#![cfg(not(windows))]

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}
