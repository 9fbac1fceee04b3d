//! Method ids, and the code that traces a service's schema at run time.
//!
//! A method's wire id is a 32-bit FNV-1a hash of its name (or the id written with
//! `#[rpc(id = N)]`), so that reordering or adding methods changes no other method's id. The
//! macro cannot see type definitions, only their names: the schema, with the shape of every
//! type, is traced from the types' `Deserialize` implementations when the program first needs
//! it (`rpc_core::schema`), and the handshake compares it method by method. The arguments are
//! traced one by one, so that one whose `Deserialize` cannot be traced hides no other's shape.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, Lit, Meta};

use crate::model::{Kind, Method, Output, Service};

/// The id of a method named `name`: 32-bit FNV-1a of the name.
pub(crate) fn method_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// A type's tokens with every whitespace character removed: `Vec<u8>`.
pub(crate) fn compact<T: quote::ToTokens>(tokens: &T) -> String {
    let mut text = tokens.to_token_stream().to_string();
    text.retain(|c| !c.is_whitespace());
    text
}

/// The text of a method's doc comment, lines joined.
fn docs(method: &Method) -> String {
    let lines: Vec<String> = method
        .docs()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(lit) => match &lit.lit {
                    Lit::Str(text) => Some(text.value().trim().to_owned()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n")
}

/// `__rpc_schema()`: the service's schema, traced once.
pub(crate) fn schema_fn(service: &Service) -> TokenStream {
    let private = &service.private;
    let name = &service.name;
    let callbacks = match &service.callbacks {
        Some(client) => {
            quote!(::core::option::Option::Some(<#client as #private::Client>::SERVICE.name))
        }
        None => quote!(::core::option::Option::None),
    };
    let builder = quote!(__builder);
    let methods = service
        .methods
        .iter()
        .map(|method| method_schema(service, method, &builder));
    quote! {
        // Repeats the methods' types, which a method may allow to be deprecated.
        #[allow(deprecated)]
        fn __rpc_schema() -> &'static #private::ServiceSchema {
            static SCHEMA: ::std::sync::OnceLock<#private::ServiceSchema> =
                ::std::sync::OnceLock::new();
            SCHEMA.get_or_init(|| {
                let __text = |__text: &::core::primitive::str| {
                    <::core::primitive::str as ::std::borrow::ToOwned>::to_owned(__text)
                };
                let mut #builder = #private::SchemaBuilder::new(#name, #callbacks);
                #(#methods)*
                #builder.finish()
            })
        }
    }
}

fn method_schema(service: &Service, method: &Method, builder: &TokenStream) -> TokenStream {
    let private = &service.private;
    let name = &method.name;
    let id = method.id;
    let kind = match (method.kind, &method.output) {
        (Kind::Oneway, _) => "oneway",
        (Kind::Call, Output::Stream { .. }) => "stream",
        (Kind::Call, _) => "call",
    };
    let docs = docs(method);
    let args = method.args.iter().map(|arg| {
        let arg_name = arg
            .ident
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let ty = compact(&arg.ty);
        quote!((__text(#arg_name), __text(#ty)))
    });
    // Each argument is traced on its own: one whose shape cannot be traced is known by its
    // spelling, and the others still by their shapes.
    let arg_shapes = method.value_args().map(|arg| {
        let ty = &arg.ty;
        let text = compact(ty);
        quote!(#builder.shape::<#ty>(#text))
    });
    let stream_arg = match method.stream_arg() {
        Some((arg_name, item)) => {
            let arg_name = arg_name
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let item_text = compact(item);
            quote!(::core::option::Option::Some((
                __text(#arg_name),
                __text(#item_text),
                #builder.shape::<#item>(#item_text),
            )))
        }
        None => quote!(::core::option::Option::None),
    };
    let (result_ty, error) = match (&method.kind, &method.output) {
        (Kind::Oneway, _) | (Kind::Call, Output::Unit) => (quote!(()), None),
        (Kind::Call, Output::Value) => (method.return_type(), None),
        (Kind::Call, Output::Result { ok, err }) => (quote!(#ok), Some(quote!(#err))),
        (Kind::Call, Output::Stream { item }) => (quote!(#item), None),
    };
    let result_text = compact(&result_ty);
    let error = match error {
        Some(err) => {
            let err_text = compact(&err);
            quote!(::core::option::Option::Some((
                __text(#err_text),
                #builder.shape::<#err>(#err_text),
            )))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {{
        let __args_shape = #private::Shape::Tuple(::std::vec![#(#arg_shapes),*]);
        let __stream_arg = #stream_arg;
        let __result_shape = #builder.shape::<#result_ty>(#result_text);
        let __error = #error;
        #builder.method(#private::MethodSchema {
            name: __text(#name),
            id: #id,
            kind: __text(#kind),
            docs: __text(#docs),
            args: ::std::vec![#(#args),*],
            args_shape: __args_shape,
            stream_arg: __stream_arg,
            result: __text(#result_text),
            result_shape: __result_shape,
            error: __error,
        });
    }}
}

#[cfg(test)]
mod tests {
    use super::method_id;

    #[test]
    fn method_ids_are_fnv1a32_of_the_name() {
        // Reference values of 32-bit FNV-1a: if these change, clients and servers built by
        // different versions of the macro stop agreeing.
        assert_eq!(method_id(""), 0x811c_9dc5);
        assert_eq!(method_id("a"), 0xe40c_292c);
        assert_eq!(method_id("foobar"), 0xbf9c_f968);
    }
}
