//! What a method's signature means on the wire: its result (a value, a typed error, a stream)
//! and the stream it takes, recognised from the types as written.

use syn::{GenericArgument, PathArguments, ReturnType, Type};

/// What a method returns, as far as the wire is concerned.
pub(crate) enum Output {
    /// No return type, or `()`.
    Unit,
    /// A plain value: the declared return type ([`Method::return_type`]).
    Value,
    /// `Result<T, E>`: `E` is the method's typed application error.
    ///
    /// Recognised by the last path segment being `Result` with exactly two type arguments, so
    /// `std::result::Result<T, E>` counts and `io::Result<T>` or an alias such as
    /// `type Outcome = Result<T, E>` is a plain value.
    Result { ok: Box<Type>, err: Box<Type> },
    /// `Stream<T>` (`rpc_core::Stream<T>`): the method opens a stream of `T` from the server.
    ///
    /// Recognised as `Stream<T>` or `rpc_core::Stream<T>`: see [`stream_item`].
    Stream { item: Box<Type> },
}

impl Output {
    pub(super) fn of(output: &ReturnType, krate: Option<&syn::Path>) -> Self {
        let ReturnType::Type(_, ty) = output else {
            return Self::Unit;
        };
        let ty = ungrouped(ty);
        match ty {
            Type::Tuple(tuple) if tuple.elems.is_empty() => Self::Unit,
            Type::Path(path) if path.qself.is_none() => {
                let Some(last) = path.path.segments.last() else {
                    return Self::Value;
                };
                if let Some(item) = stream_item(ty, krate) {
                    return Self::Stream {
                        item: Box::new(item.clone()),
                    };
                }
                if last.ident != "Result" {
                    return Self::Value;
                }
                let PathArguments::AngleBracketed(args) = &last.arguments else {
                    return Self::Value;
                };
                let mut types = args.args.iter().map(|arg| match arg {
                    GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                });
                match (types.next(), types.next(), types.next()) {
                    (Some(Some(ok)), Some(Some(err)), None) => Self::Result {
                        ok: Box::new(ok.clone()),
                        err: Box::new(err.clone()),
                    },
                    _ => Self::Value,
                }
            }
            _ => Self::Value,
        }
    }
}

/// `ty` itself, out of the parentheses or the invisible group (what a `macro_rules!` `$t:ty`
/// passes) around it.
fn ungrouped(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungrouped(&group.elem),
        Type::Paren(paren) => ungrouped(&paren.elem),
        _ => ty,
    }
}

/// `T` if `ty` is `Stream<T>` or `rpc_core::Stream<T>` (with `krate`, the path of a renamed
/// `rpc_core`, in its place if there is one). A type of another path whose last segment is
/// `Stream` is another type (`media::Stream<Frame>`); an alias of `rpc_core::Stream` under
/// another name cannot be told from any other type and is not taken for a stream.
pub(crate) fn stream_item<'a>(ty: &'a Type, krate: Option<&syn::Path>) -> Option<&'a Type> {
    let Type::Path(path) = ungrouped(ty) else {
        return None;
    };
    let segments = &path.path.segments;
    let last = segments.last()?;
    if path.qself.is_some() || last.ident != "Stream" {
        return None;
    }
    let prefix = || segments.iter().take(segments.len() - 1);
    let ours = match krate {
        Some(krate) => same_path(prefix(), &krate.segments),
        None => segments.len() == 2 && prefix().all(|segment| segment.ident == "rpc_core"),
    };
    if segments.len() > 1 && !ours {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter();
    match (types.next(), types.next()) {
        (Some(GenericArgument::Type(item)), None) => Some(item),
        _ => None,
    }
}

/// Whether two paths name the same thing by their segments' names (leading `::` ignored).
fn same_path<'a>(
    a: impl IntoIterator<Item = &'a syn::PathSegment>,
    b: impl IntoIterator<Item = &'a syn::PathSegment>,
) -> bool {
    a.into_iter()
        .map(|segment| &segment.ident)
        .eq(b.into_iter().map(|segment| &segment.ident))
}
