//! What a server says about its service, and how `rpc describe` shows it.
//!
//! [`Describe`] mirrors the description a running server sends when asked (`describe`): every
//! method with its wire id, kind, documentation, argument names and
//! types as written in the trait, and the traced [`Format`] of its arguments, result and error,
//! whose named types are in [`Describe::registry`]. The codec needs only the formats; the
//! names as written are for people.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

use crate::codec::type_name;

/// A service as a running server describes it.
///
/// `serde_reflection::Format` keeps an `Rc` for tracing, so a `Describe` is neither `Send` nor
/// `Sync`: build it on the thread that uses it (in the command, a current-thread runtime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Describe {
    /// The service's interface name (the trait's name).
    pub service: String,
    /// The fingerprint the handshake compares; `None` if the server's schema is too large to
    /// fingerprint within the bound of [`rpc_core::schema::ServiceSchema::bounded_fingerprint`].
    pub fingerprint: Option<u64>,
    /// Every method, in the trait's order.
    pub methods: Vec<MethodSchema>,
    /// The structs and enums that the methods' formats name with `Format::TypeName`.
    pub registry: Registry,
}

/// One method of a [`Describe`]d service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The method's name.
    pub name: String,
    /// Its wire id.
    pub id: u32,
    /// Whether it is answered once, never, or with a stream of items.
    pub kind: MethodKind,
    /// Its doc comment, as written (without the `///`).
    pub docs: String,
    /// Its arguments: name and type as written in the trait.
    pub args: Vec<(String, String)>,
    /// The arguments' shape: a `Format::Tuple` with one format per argument, in order.
    pub args_format: Format,
    /// The result type as written (the item type for a stream; `()` when there is none).
    pub result: String,
    /// The result's shape (a stream's item's).
    pub result_format: Format,
    /// The application error type as written, for methods returning `Result<T, E>`.
    pub error: Option<String>,
    /// The application error's shape.
    pub error_format: Option<Format>,
    /// The name of the argument that takes a stream of items from the client, if the method
    /// has one: `rpc` cannot send one, and refuses the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
}

/// How a method answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// One request, one reply.
    Call,
    /// One request, no reply.
    Oneway,
    /// One request, a stream of items.
    Stream,
}

impl Describe {
    /// The method called `name`, if the service has one.
    pub fn method(&self, name: &str) -> Option<&MethodSchema> {
        self.methods.iter().find(|method| method.name == name)
    }

    /// The methods' names, comma-separated, for messages.
    pub fn method_names(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    }
}

impl MethodSchema {
    /// The method as a line of Rust: `add(a: i64, b: i64) -> i64`, with `oneway ` or `stream `
    /// in front for those kinds and `-> Result<T, E>` for methods with an application error.
    pub fn signature(&self) -> String {
        let mut line = String::new();
        match self.kind {
            MethodKind::Call => {}
            MethodKind::Oneway => line.push_str("oneway "),
            MethodKind::Stream => line.push_str("stream "),
        }
        line.push_str(&self.name);
        line.push('(');
        for (i, (name, ty)) in self.args.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            let _ = write!(line, "{name}: {ty}");
        }
        line.push(')');
        let result = self.result.as_str();
        match (&self.error, self.kind) {
            (_, MethodKind::Oneway) => {}
            (Some(error), _) => {
                let _ = write!(line, " -> Result<{result}, {error}>");
            }
            (None, _) if result == "()" => {}
            (None, _) => {
                let _ = write!(line, " -> {result}");
            }
        }
        line
    }

    /// The first line of the doc comment, trimmed.
    pub fn summary(&self) -> &str {
        self.docs
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }
}

/// Renders a description as `rpc describe` prints it: a header, one line per method with the
/// first line of its docs, and the named types the methods use.
///
/// ```text
/// service Calculator (fingerprint 0x00000000000004d2)
///
/// methods:
///   add(a: i64, b: i64) -> i64   # Adds two numbers.
///
/// types:
///   struct Point { x: i32, y: i32 }
/// ```
pub fn render(describe: &Describe) -> String {
    let mut out = String::new();
    let _ = match describe.fingerprint {
        Some(fingerprint) => writeln!(
            out,
            "service {} (fingerprint {fingerprint:#018x})",
            describe.service
        ),
        None => writeln!(
            out,
            "service {} (fingerprint: too large to compute)",
            describe.service
        ),
    };
    out.push_str("\nmethods:\n");
    if describe.methods.is_empty() {
        out.push_str("  (none)\n");
    }
    let lines: Vec<(String, &str)> = describe
        .methods
        .iter()
        .map(|method| (method.signature(), method.summary()))
        .collect();
    let width = lines
        .iter()
        .filter(|(_, summary)| !summary.is_empty())
        .map(|(signature, _)| signature.chars().count())
        .max()
        .unwrap_or(0);
    for (signature, summary) in &lines {
        if summary.is_empty() {
            let _ = writeln!(out, "  {signature}");
        } else {
            let _ = writeln!(out, "  {signature:width$}   # {summary}");
        }
    }
    if !describe.registry.is_empty() {
        out.push_str("\ntypes:\n");
        for (name, container) in &describe.registry {
            let _ = writeln!(out, "  {}", render_container(name, container));
        }
    }
    out
}

/// A named type as one line of Rust: `struct Point { x: i32, y: i32 }`,
/// `enum Shape { Empty, Circle { radius: f64 }, Square(f32) }`.
pub fn render_container(name: &str, container: &ContainerFormat) -> String {
    match container {
        ContainerFormat::UnitStruct => format!("struct {name};"),
        ContainerFormat::NewTypeStruct(inner) => format!("struct {name}({});", type_name(inner)),
        ContainerFormat::TupleStruct(formats) => format!("struct {name}{};", tuple(formats)),
        ContainerFormat::Struct(fields) => format!("struct {name} {}", braces(fields)),
        ContainerFormat::Enum(variants) => {
            let variants: Vec<String> = variants
                .values()
                .map(|variant| {
                    let content = match &variant.value {
                        VariantFormat::Variable(_) => "(?)".to_owned(),
                        VariantFormat::Unit => String::new(),
                        VariantFormat::NewType(inner) => format!("({})", type_name(inner)),
                        VariantFormat::Tuple(formats) => tuple(formats),
                        VariantFormat::Struct(fields) => format!(" {}", braces(fields)),
                    };
                    format!("{}{content}", variant.name)
                })
                .collect();
            format!("enum {name} {{ {} }}", variants.join(", "))
        }
    }
}

fn tuple(formats: &[Format]) -> String {
    let names: Vec<String> = formats.iter().map(type_name).collect();
    format!("({})", names.join(", "))
}

fn braces(fields: &[Named<Format>]) -> String {
    if fields.is_empty() {
        return "{}".to_owned();
    }
    let fields: Vec<String> = fields
        .iter()
        .map(|field| format!("{}: {}", field.name, type_name(&field.value)))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

#[cfg(test)]
mod tests;
