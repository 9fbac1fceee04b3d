//! The types a service method's signature may hold: owned, nameable outside the trait, and a
//! stream only as an argument or the result itself.

use syn::{GenericArgument, Path, PathArguments, ReturnType, Type};

use crate::ctxt::Errors;

/// Where a type appears, for the wording of errors.
#[derive(Clone, Copy)]
pub(super) enum Place {
    Argument,
    Return,
}

impl Place {
    fn borrowed(self) -> &'static str {
        match self {
            Place::Argument => {
                "arguments are sent to another process, so they cannot be borrowed: use an owned \
                 type (`String` for `&str`, `Vec<u8>` for `&[u8]`)"
            }
            Place::Return => {
                "results are sent to another process, so they cannot be borrowed: return an owned type"
            }
        }
    }

    fn impl_trait(self) -> &'static str {
        match self {
            Place::Argument => {
                "`impl Trait` arguments are not supported: the server must know the concrete type \
                 to decode"
            }
            Place::Return => {
                "`impl Trait` results are not supported: the client must know the concrete type to \
                 decode; write the type (the method already becomes `fn -> impl Future<Output = T> + Send`)"
            }
        }
    }
}

/// Rejects what cannot travel or cannot be named outside the trait: references, non-`'static`
/// lifetimes, `impl Trait`, `Self`, raw pointers and `_`, at any depth.
pub(super) fn check_type(errors: &mut Errors, ty: &Type, place: Place, krate: Option<&Path>) {
    match ty {
        Type::Reference(reference) => errors.spanned(reference, place.borrowed()),
        Type::ImplTrait(impl_trait) => errors.spanned(impl_trait, place.impl_trait()),
        Type::Ptr(ptr) => errors.spanned(ptr, "raw pointers cannot be sent to another process"),
        Type::Infer(infer) => {
            errors.spanned(
                infer,
                "write the type: `_` is not allowed in a service method's signature",
            );
        }
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_nested(errors, &qself.ty, place, krate);
            }
            check_path(errors, &path.path, place, krate);
        }
        Type::Array(array) => check_nested(errors, &array.elem, place, krate),
        Type::Slice(slice) => check_nested(errors, &slice.elem, place, krate),
        // The same type, in parentheses or passed through a `macro_rules!` `$t:ty`.
        Type::Paren(paren) => check_type(errors, &paren.elem, place, krate),
        Type::Group(group) => check_type(errors, &group.elem, place, krate),
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_nested(errors, elem, place, krate);
            }
        }
        // Trait objects, function pointers, `!` and type macros are left to the compiler: some
        // can be made serializable (a `Box<dyn Trait>` with a registry), and a macro is opaque.
        _ => {}
    }
}

/// A type inside another: as [`check_type`], and a stream cannot be there (only an argument or
/// the result itself can be a stream).
fn check_nested(errors: &mut Errors, ty: &Type, place: Place, krate: Option<&Path>) {
    if crate::model::stream_item(ty, krate).is_some() {
        errors.spanned(
            ty,
            "a stream cannot be inside another type: only an argument or the result itself can \
             be `rpc_core::Stream<T>`",
        );
    }
    check_type(errors, ty, place, krate);
}

fn check_path(errors: &mut Errors, path: &Path, place: Place, krate: Option<&Path>) {
    if let Some(cow) = elided_cow(path) {
        // The one common type whose lifetime is left out: caught here, not by the compiler in
        // generated code. (A type of the user's with a hidden lifetime cannot be seen.)
        errors.spanned(
            cow,
            "borrowed data cannot cross a process boundary: write `Cow<'static, _>` or use an \
             owned type",
        );
    }
    for segment in &path.segments {
        if segment.ident == "Self" {
            errors.spanned(
                &segment.ident,
                "`Self` cannot appear in a service method's signature: the generated client has \
                 no such type; name the type",
            );
        }
        match &segment.arguments {
            PathArguments::None => {}
            PathArguments::AngleBracketed(args) => {
                for arg in &args.args {
                    match arg {
                        GenericArgument::Type(ty) => check_nested(errors, ty, place, krate),
                        GenericArgument::AssocType(assoc) => {
                            check_nested(errors, &assoc.ty, place, krate)
                        }
                        GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                            errors.spanned(
                                lifetime,
                                "borrowed data cannot cross a process boundary: use `'static` or \
                                 an owned type",
                            );
                        }
                        _ => {}
                    }
                }
            }
            PathArguments::Parenthesized(args) => {
                for input in &args.inputs {
                    check_nested(errors, input, place, krate);
                }
                if let ReturnType::Type(_, output) = &args.output {
                    check_nested(errors, output, place, krate);
                }
            }
        }
    }
}

/// The last segment of `path` if it is the standard library's `Cow` (`Cow`, `borrow::Cow`,
/// `std::borrow::Cow` or `alloc::borrow::Cow`) with its type argument and without its
/// lifetime: `Cow<str>`. A type of the user's named `Cow` elsewhere, or one without type
/// arguments, is not it.
fn elided_cow(path: &Path) -> Option<&syn::PathSegment> {
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let standard = matches!(
        names.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["Cow"] | ["borrow", "Cow"] | ["std" | "alloc", "borrow", "Cow"]
    );
    let last = path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let lifetime = args
        .args
        .iter()
        .any(|arg| matches!(arg, GenericArgument::Lifetime(_)));
    (standard && !lifetime).then_some(last)
}
