//! What the generated code cannot support becomes a compile error spanned on the tokens at
//! fault. Every check runs, so one build reports every mistake.

use std::collections::HashSet;

use quote::quote;
use syn::{FnArg, ReturnType, TraitItem, Type};

use crate::ctxt::Errors;
use crate::model::{Kind, Method, Output, Service};

mod types;

use types::{check_type, Place};

/// Names of the generated client's own methods (inherent, `Client`, `Clone`, `Debug`): a service
/// method with one of these names would clash with them.
pub(crate) const RESERVED: &[&str] = &["with_timeout", "handle", "from_handle", "clone", "fmt"];

/// Names of the generated blocking client's own methods (`BlockingClient`): a service method with
/// one of these names would take their place on it.
pub(crate) const RESERVED_BLOCKING: &[&str] = &["as_async", "from_async"];

/// The service name a client sends to take whatever service a server serves (the protocol's
/// `ANY_SERVICE`, which this crate cannot name: it does not depend on the core).
const ANY_SERVICE: &str = "*";

/// Arguments travel as one tuple, and serde implements its traits for tuples up to this length.
const MAX_ARGS: usize = 16;

/// Records every problem of `service` in `errors`.
pub(crate) fn check(errors: &mut Errors, service: &Service) {
    check_trait(errors, service);
    let mut names = HashSet::new();
    let mut ids = std::collections::HashMap::new();
    for method in &service.methods {
        check_method(errors, service, method);
        if !names.insert(method.name.as_str()) {
            errors.spanned(
                &method.sig.ident,
                format_args!(
                    "duplicate method name `{}`: each method needs its own name",
                    method.name
                ),
            );
            continue;
        }
        check_id(errors, method, &mut ids);
    }
}

/// Method ids must differ, and `u32::MAX` is `describe`'s.
fn check_id<'a>(
    errors: &mut Errors,
    method: &'a Method,
    ids: &mut std::collections::HashMap<u32, &'a str>,
) {
    let at = || match &method.id_lit {
        Some(lit) => quote!(#lit),
        None => {
            let ident = &method.sig.ident;
            quote!(#ident)
        }
    };
    if method.id == u32::MAX {
        errors.spanned(
            at(),
            format_args!(
                "method id {} is reserved for `describe`: give `{}` another with `#[rpc(id = N)]`",
                u32::MAX,
                method.name
            ),
        );
    } else if let Some(other) = ids.insert(method.id, &method.name) {
        errors.spanned(
            at(),
            format_args!(
                "methods `{other}` and `{}` have the same id {}: give one another with \
                 `#[rpc(id = N)]`",
                method.name, method.id
            ),
        );
    }
}

fn check_trait(errors: &mut Errors, service: &Service) {
    if let Some(unsafety) = &service.unsafety {
        errors.spanned(unsafety, "a service trait cannot be `unsafe`");
    }
    if let Some(auto_token) = &service.auto_token {
        errors.spanned(auto_token, "a service trait cannot be an `auto` trait");
    }
    if !service.generics.params.is_empty() {
        errors.spanned(
            &service.generics,
            "a service trait cannot have generic parameters: client and server must agree on \
             concrete types",
        );
    }
    if let Some(where_clause) = &service.generics.where_clause {
        errors.spanned(where_clause, "a service trait cannot have a `where` clause");
    }
    if let Some(lit) = &service.name_lit {
        let name = lit.value();
        if name.is_empty() {
            errors.spanned(lit, "the service name cannot be empty");
        } else if name.chars().any(char::is_control) {
            errors.spanned(lit, "the service name cannot contain control characters");
        } else if name == ANY_SERVICE {
            errors.spanned(
                lit,
                "the service name cannot be `*`: a client asks for any service with it",
            );
        }
    }
    for item in &service.unsupported {
        let what = match item {
            TraitItem::Const(_) => "associated consts",
            TraitItem::Type(_) => "associated types",
            TraitItem::Macro(_) => "macro invocations",
            _ => "items other than methods",
        };
        errors.spanned(
            item,
            format_args!("{what} are not supported in a service trait: it may only contain `async fn` methods"),
        );
    }
}

fn check_method(errors: &mut Errors, service: &Service, method: &Method) {
    let sig = &method.sig;
    let (fn_token, ident) = (&sig.fn_token, &sig.ident);

    for attr in &method.attrs {
        if attr.path().is_ident("cfg") {
            errors.spanned(
                attr,
                "`#[cfg]` is not supported on service methods: method ids and the fingerprint \
                 would change with the configuration",
            );
        } else if attr.path().is_ident("cfg_attr") {
            check_cfg_attr(errors, attr);
        }
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "service methods cannot be `const`");
    }
    // `fn m(&self) -> impl Future<Output = T>` is what the macro generates; ask for the
    // `async fn` it comes from instead of also rejecting the `impl Trait`.
    let returns_impl =
        matches!(&sig.output, ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)));
    if sig.asyncness.is_none() {
        let message = if returns_impl {
            "service methods must be `async fn`: write `async fn name(&self, ...) -> T` instead of \
             returning `impl Future<Output = T>` (the macro generates that signature)"
        } else {
            "service methods must be `async fn`: write `async fn name(&self, ...) -> T`"
        };
        errors.spanned(quote!(#fn_token #ident), message);
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            "service methods cannot be `unsafe`: a remote caller cannot uphold a safety contract",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "service methods cannot have an ABI (`extern`)");
    }
    if !sig.generics.params.is_empty() {
        let message = if sig.generics.type_params().next().is_none()
            && sig.generics.const_params().next().is_none()
        {
            "service methods cannot have lifetime parameters: arguments and results are owned values"
        } else {
            "service methods cannot be generic: the server must know the concrete types to decode"
        };
        errors.spanned(&sig.generics, message);
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(where_clause, "service methods cannot have a `where` clause");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "service methods cannot be variadic");
    }
    if let Some(default) = &method.default {
        errors.spanned(
            default,
            "service methods cannot have a default body: write the body in the impl of the trait",
        );
    }
    let clashes_with = if RESERVED.contains(&method.name.as_str()) {
        Some(&service.client_ident)
    } else if RESERVED_BLOCKING.contains(&method.name.as_str()) {
        Some(&service.blocking_ident)
    } else {
        None
    };
    if let Some(client) = clashes_with {
        errors.spanned(
            ident,
            format_args!(
                "a method named `{}` would clash with `{}::{}`; rename it (reserved names: {})",
                method.name,
                client,
                method.name,
                RESERVED
                    .iter()
                    .chain(RESERVED_BLOCKING)
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }

    check_receiver(errors, method);
    check_args(errors, method, service.krate());
    check_idempotent(errors, method);

    if let ReturnType::Type(_, ty) = &sig.output {
        if !(returns_impl && sig.asyncness.is_none()) {
            check_type(errors, ty, Place::Return, service.krate());
        }
        if method.kind == Kind::Oneway && !matches!(method.output, Output::Unit) {
            errors.spanned(
                ty,
                "`#[rpc(oneway)]` methods cannot return a value: no reply is sent; remove the \
                 return type or `oneway`",
            );
        }
    }
}

/// `idempotent` lets a session send a call again: a one-way call is never sent again (it has
/// no reply to wait for), and a stream from the client cannot be sent twice.
fn check_idempotent(errors: &mut Errors, method: &Method) {
    let Some(path) = &method.idempotent else {
        return;
    };
    if method.kind == Kind::Oneway {
        errors.spanned(
            path,
            "`idempotent` does not apply to `#[rpc(oneway)]` methods: a one-way call is never \
             sent again; remove one of them",
        );
    }
    if method.stream_arg().is_some() {
        errors.spanned(
            path,
            "`idempotent` does not apply to a method that takes a stream: the stream's items \
             cannot be sent again; remove `idempotent`",
        );
    }
}

/// `#[cfg_attr(condition, attrs...)]` on a method: accepted unless an attribute it adds is one
/// that would change the method's id or options, or remove it, with the configuration.
fn check_cfg_attr(errors: &mut Errors, attr: &syn::Attribute) {
    use syn::punctuated::Punctuated;
    let parsed = attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated);
    let metas = match parsed {
        Ok(metas) => metas,
        // Not ours to explain: the compiler reports a malformed `cfg_attr` itself.
        Err(_) => return,
    };
    for meta in metas.iter().skip(1) {
        let path = meta.path();
        if ["cfg", "cfg_attr", "rpc"]
            .iter()
            .any(|name| path.is_ident(name))
        {
            errors.spanned(
                meta,
                "a conditional `#[cfg]`, `#[cfg_attr]` or `#[rpc]` is not supported on service \
                 methods: method ids and the fingerprint would change with the configuration",
            );
        }
    }
}

fn check_receiver(errors: &mut Errors, method: &Method) {
    let Some(FnArg::Receiver(receiver)) = method.sig.inputs.first() else {
        errors.push(syn::Error::new(
            method.sig.paren_token.span.join(),
            "service methods must take `&self` first: a method without a receiver cannot be called on a client",
        ));
        return;
    };
    if receiver.colon_token.is_some() {
        errors.spanned(
            receiver,
            "service methods must take `&self`: typed receivers such as `self: Box<Self>` are not supported",
        );
    } else if receiver.reference.is_none() {
        errors.spanned(
            receiver,
            "service methods must take `&self`, not `self`: one service value serves every call",
        );
    } else if receiver.mutability.is_some() {
        errors.spanned(
            receiver,
            "service methods must take `&self`, not `&mut self`: calls run concurrently; keep \
             mutable state behind a `Mutex` or atomics",
        );
    } else if let Some((_, Some(lifetime))) = &receiver.reference {
        if lifetime.ident != "_" {
            errors.spanned(
                receiver,
                "service methods must take `&self` without a lifetime: each call borrows the \
                 service for as long as it runs",
            );
        }
    }
}

fn check_args(errors: &mut Errors, method: &Method, krate: Option<&syn::Path>) {
    let mut names = HashSet::new();
    let mut streams = 0;
    // The arguments that travel in the call's tuple: a stream travels on its own.
    let mut values = 0;
    for arg in &method.args {
        let (pat, ty) = (&arg.pat, &arg.ty);
        for attr in &arg.attrs {
            errors.spanned(
                attr,
                "attributes on service method arguments are not supported",
            );
        }
        match &arg.ident {
            None => errors.spanned(
                pat,
                "service method arguments must be plain names (`name: Type`): the name becomes a \
                 parameter of the client method",
            ),
            Some(ident) => {
                if !names.insert(ident.to_string()) {
                    errors.spanned(ident, format_args!("argument name `{ident}` is used twice"));
                }
            }
        }
        if arg.stream.is_some() {
            if streams > 0 {
                errors.spanned(
                    ty,
                    "a method takes at most one stream from the client: merge them into one \
                     stream of an enum",
                );
            }
            if method.kind == Kind::Oneway {
                errors.spanned(
                    ty,
                    "`#[rpc(oneway)]` methods cannot take a stream: its items need the call's \
                     flow control; remove `oneway`",
                );
            }
            streams += 1;
        }
        if arg.stream.is_none() {
            values += 1;
        }
        if arg.stream.is_none() && values == MAX_ARGS + 1 {
            errors.spanned(
                quote!(#pat: #ty),
                format_args!(
                    "a service method takes at most {MAX_ARGS} arguments (they travel as one tuple); \
                     group them in a struct"
                ),
            );
        }
        check_type(errors, ty, Place::Argument, krate);
    }
}
