//! A described service for the tests: a calculator whose formats are traced from real types.

use serde::{Deserialize, Serialize};
use serde_reflection::{Format, Tracer, TracerConfig};

use crate::describe::{Describe, MethodKind, MethodSchema};

/// A point, as a method argument.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
pub(crate) struct Point {
    pub(crate) x: i32,
    pub(crate) y: i32,
}

/// The calculator's application error.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
pub(crate) enum MathError {
    DivideByZero,
    Overflow { at: i64 },
}

/// A method's schema with the fields the tests vary.
fn method(
    name: &str,
    id: u32,
    kind: MethodKind,
    docs: &str,
    args: &[(&str, &str, Format)],
    result: (&str, Format),
) -> MethodSchema {
    MethodSchema {
        name: name.to_owned(),
        id,
        kind,
        docs: docs.to_owned(),
        args: args
            .iter()
            .map(|(name, ty, _)| ((*name).to_owned(), (*ty).to_owned()))
            .collect(),
        args_format: Format::Tuple(args.iter().map(|(_, _, f)| f.clone()).collect()),
        result: result.0.to_owned(),
        result_format: result.1,
        error: None,
        error_format: None,
        upload: None,
    }
}

/// `Calculator`: add, divide (with `MathError`), oneway log, stream ticks, and plot (which
/// takes a struct).
pub(crate) fn calculator() -> Describe {
    let mut tracer = Tracer::new(TracerConfig::default());
    let (error, _) = tracer
        .trace_simple_type::<MathError>()
        .expect("MathError traces");
    let (point, _) = tracer.trace_simple_type::<Point>().expect("Point traces");
    let registry = tracer.registry().expect("registry is complete");
    let two_ints = [("a", "i64", Format::I64), ("b", "i64", Format::I64)];
    let mut divide = method(
        "divide",
        2,
        MethodKind::Call,
        "Divides a by b.\n\nFails on zero.",
        &two_ints,
        ("i64", Format::I64),
    );
    divide.error = Some("MathError".to_owned());
    divide.error_format = Some(error);
    Describe {
        service: "Calculator".to_owned(),
        fingerprint: Some(0x1234),
        methods: vec![
            method(
                "add",
                1,
                MethodKind::Call,
                " Adds two numbers.",
                &two_ints,
                ("i64", Format::I64),
            ),
            divide,
            method(
                "log",
                3,
                MethodKind::Oneway,
                "",
                &[("line", "String", Format::Str)],
                ("()", Format::Unit),
            ),
            method(
                "ticks",
                4,
                MethodKind::Stream,
                "Counts up.",
                &[("every_ms", "u64", Format::U64)],
                ("u64", Format::U64),
            ),
            method(
                "plot",
                5,
                MethodKind::Call,
                "Draws points.",
                &[("points", "Vec<Point>", Format::Seq(Box::new(point)))],
                ("()", Format::Unit),
            ),
        ],
        registry,
    }
}
