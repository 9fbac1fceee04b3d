#![forbid(unsafe_code)]
//! The `#[service]` attribute macro of the pipe RPC framework. Use it through `rpc-core`, as
//! `#[rpc_core::service]`: the generated code names only `rpc_core`'s hidden module, so a
//! service needs no other dependency.
//!
//! The macro parses the trait into a small model (`model`), checks it (`check`: every
//! mistake is a compile error spanned on the tokens at fault, all reported at once), then
//! generates the trait, the descriptors (`fingerprint`), the client (`client`) and the
//! server (`server`).

mod blocking;
mod check;
mod client;
mod ctxt;
mod expand;
mod model;
mod schema;
mod server;

use proc_macro::TokenStream;

/// Turns a trait into an RPC service: a typed client and a server dispatcher.
///
/// ```ignore
/// #[rpc_core::service] // or #[rpc_core::service(name = "calc.v1")]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     /// Divides; the error is typed and reaches the client as `CalcError`.
///     async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
///     /// Writes a line to the server's log without waiting.
///     #[rpc(oneway)]
///     async fn log(&self, line: String);
/// }
/// ```
///
/// (The crate docs of `rpc-core` hold a tested example.)
///
/// # What it generates
///
/// - **The trait**, with its attributes and docs, as `Trait: Send + Sync + 'static` whose
///   methods return `impl Future<Output = T> + Send`. Implement it with `async fn`s.
/// - **`CalculatorClient`** (same visibility as the trait): cheap to clone, implements
///   `rpc_core::Client`. Each method has the trait method's arguments and docs and returns
///   `Result<T, RpcError>`; a method declared `-> Result<T, E>` returns
///   `Result<Result<T, E>, RpcError>`; a `#[rpc(oneway)]` method returns `Result<(), RpcError>`
///   once the call is sent. `with_timeout` gives a client whose calls have another deadline.
/// - **`CalculatorServer<S>`**: `new(service)` or `from_arc(arc)` for any `S: Calculator`; it
///   implements `rpc_core::Dispatch`, which the server engine serves.
///
/// A method's wire id is a 32-bit hash of its name, or the id given with `#[rpc(id = N)]`
/// (two methods with one id are a compile error, and so is `u32::MAX`, the id of the
/// framework's own `describe`), so methods can be reordered and added. The
/// handshake compares the service's name and a fingerprint of every method's id and the serde
/// shapes of its argument and result types (traced at run time from their `Deserialize`, so a
/// field added deep inside an argument counts); when the fingerprints differ, client and server
/// bind method by method, and a method whose shapes differ fails at once with
/// `RpcError::Incompatible` instead of decoding garbage.
///
/// `Result<T, E>` is recognised by its last path segment `Result` with two type arguments: an
/// alias such as `io::Result<T>` or `type Answer = Result<T, E>` is treated as a plain value (and
/// an `Err` then travels as an ordinary value).
///
/// # Options
///
/// - `#[service(name = "calc.v1")]`: the name in the handshake (default: the trait's name).
/// - `#[service(crate = "path")]`: where `rpc_core` is, if the dependency is renamed.
/// - `#[service(callbacks = Prompt)]`: the service (trait) the server calls back on each
///   client's connection; clients must serve it (`ClientConfig::serve_callbacks`). Its methods
///   cannot take or return streams (a compile error).
/// - `#[rpc(id = N)]` on a method: its wire id, instead of the hash of its name.
/// - `#[rpc(oneway)]` on a method: the client does not wait and no reply is sent; the method
///   must not return a value.
/// - `#[rpc(idempotent)]` on a method: running it twice has the effect of running it once, so
///   a session (`rpc_core::session`) sends it again after a reconnect, within its deadline, and
///   opens the stream it returns again (a subscription). Not on one-way methods, nor on methods
///   that take a stream.
///
/// A method may take one `rpc_core::Stream<T>` argument (a stream from the client) and may
/// return `rpc_core::Stream<T>` (a stream from the server); not one-way, and not inside
/// another type. A stream is written `rpc_core::Stream<T>` (the renamed crate's path with
/// `crate = "..."`) or `Stream<T>` after a `use`: a type of another path whose last segment is
/// `Stream` is the user's own type, a plain value, and an alias of `rpc_core::Stream` under
/// another name is not seen as a stream.
///
/// `#[allow]` on the trait (or a `#[cfg_attr]` adding only `allow`) applies to everything
/// generated with it, and on a method (with `#[deprecated]`) to the clients' methods too, which
/// repeat its name and types (a deprecated type, say).
///
/// # Rules (each a compile error)
///
/// The trait has no generic parameters, `where` clause, associated types, consts or macros, and
/// is not `unsafe` or `auto`. Every method is an `async fn` without generics, `where` clause,
/// default body, `unsafe`, `extern`, `const` or `#[cfg]` (a `#[cfg_attr]` may add any
/// attribute but `cfg`, `cfg_attr` or `rpc`), takes `&self` first (no lifetime written), and its
/// arguments are plain names (at most 16, a stream argument apart). Argument and result types
/// are owned: no references or non-`'static` lifetimes at any depth (a `Cow` needs its
/// `'static` written), no `impl Trait`, no `Self`; they must also be `Send + Sync` (results
/// `Send`), since the blocking client runs each call on the library's runtime (a `Cell` or
/// `Rc` fails there, reported on the attribute). Method names are distinct
/// and none of `with_timeout`, `handle`, `from_handle`, `clone`, `fmt` (the client's own) or
/// `as_async`, `from_async` (the blocking client's own). A service name is not empty, has no
/// control characters and is not `*` (which a client sends to take any service).
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into()).into()
}
