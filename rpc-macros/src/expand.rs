//! The pipeline: parse the trait into the model, check it, then generate the trait, the
//! descriptors, the client and the server.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Item;

use crate::ctxt::Errors;
use crate::model::{Kind, Output, Service, ServiceOptions};
use crate::{blocking, check, client, schema, server};

/// Expands `#[service(attr)] item`.
///
/// Returns the code, or every error found and the item as written: a half-generated service
/// would only add follow-on errors, and without the trait every impl of it and every use
/// would be one more.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let written = item.clone();
    generate(attr, item).unwrap_or_else(|error| {
        let error = error.into_compile_error();
        let written = as_written(written);
        quote!(#error #written)
    })
}

/// The trait as written, without the `#[rpc(...)]` attributes that only `#[service]` reads;
/// nothing if the item is not a trait.
fn as_written(item: TokenStream) -> TokenStream {
    let Ok(mut item) = syn::parse2::<syn::ItemTrait>(item) else {
        return TokenStream::new();
    };
    let ours = |attr: &syn::Attribute| attr.path().is_ident("rpc");
    for trait_item in &mut item.items {
        match trait_item {
            syn::TraitItem::Fn(method) => {
                method.attrs.retain(|attr| !ours(attr));
                for input in &mut method.sig.inputs {
                    if let syn::FnArg::Typed(arg) = input {
                        arg.attrs.retain(|attr| !ours(attr));
                    }
                }
            }
            // Refused items too: their error is the macro's, not "cannot find attribute `rpc`".
            syn::TraitItem::Const(item) => item.attrs.retain(|attr| !ours(attr)),
            syn::TraitItem::Type(item) => item.attrs.retain(|attr| !ours(attr)),
            syn::TraitItem::Macro(item) => item.attrs.retain(|attr| !ours(attr)),
            _ => {}
        }
    }
    quote!(#item)
}

fn generate(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let options = ServiceOptions::parse(&mut errors, attr);
    let item = match syn::parse2::<Item>(item) {
        Ok(Item::Trait(item)) => item,
        Ok(_) => {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`#[service]` applies to a trait",
            ));
            return errors.finish().map(|()| TokenStream::new());
        }
        Err(e) => {
            errors.push(e);
            return errors.finish().map(|()| TokenStream::new());
        }
    };
    let service = Service::from_trait(&mut errors, options, item);
    check::check(&mut errors, &service);
    errors.finish()?;

    let trait_def = trait_def(&service);
    let descriptors = descriptors(&service)?;
    let client_struct = client::struct_def(&service);
    let client_impls = client::impls(&service);
    let blocking_struct = blocking::struct_def(&service);
    let blocking_impls = blocking::impls(&service);
    let server_struct = server::struct_def(&service);
    let server_impls = server::impls(&service);
    // `#[cfg]` on the trait (written after `#[service]`) applies to everything generated with it,
    // and so does `#[allow]`: the generated code repeats the trait's types, and what the trait
    // allows of them (a deprecated type) is allowed in the copies too.
    let cfg = service.attrs.iter().filter(|attr| {
        let path = attr.path();
        path.is_ident("cfg") || path.is_ident("allow") || crate::model::adds_only(attr, &["allow"])
    });
    let cfg = quote!(#(#cfg)*);
    Ok(quote! {
        #trait_def
        #cfg
        #client_struct
        #cfg
        #blocking_struct
        #cfg
        #server_struct
        #cfg
        const _: () = {
            #descriptors
            #client_impls
            #blocking_impls
            #server_impls
        };
    })
}

/// The trait as the server implements it: `Send + Sync + 'static`, each `async fn` turned into a
/// `fn` returning a `Send` future (an `async fn` in the impl satisfies it).
fn trait_def(service: &Service) -> TokenStream {
    let Service {
        attrs,
        vis,
        trait_token,
        ident,
        supertraits,
        ..
    } = service;
    let supertraits = supertraits.iter();
    let methods = service.methods.iter().map(|method| {
        let attrs = &method.attrs;
        let fn_token = &method.sig.fn_token;
        let name = &method.sig.ident;
        let receiver = &method.sig.inputs.first();
        let args = method.args.iter().map(|arg| {
            let (ident, ty) = (&arg.ident, &arg.ty);
            quote!(#ident: #ty)
        });
        let output = method.return_type();
        let semi_token = method.semi_token.unwrap_or_default();
        // Spanned on `async`: an impl whose future is not `Send` is told "required by this
        // bound" there.
        let span = method
            .sig
            .asyncness
            .map_or_else(Span::call_site, |token| token.span);
        let future = quote_spanned! {span=>
            impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
        quote! {
            #(#attrs)*
            #fn_token #name(#receiver, #(#args),*) -> #future
            #semi_token
        }
    });
    let mut body = TokenStream::new();
    service
        .brace_token
        .surround(&mut body, |body| body.extend(methods));
    quote! {
        #(#attrs)*
        #vis #trait_token #ident: #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static
        #body
    }
}

/// The hidden statics behind `ServiceDescriptor`: `__RPC_METHODS[i]` is method `i` of the
/// trait, and `__rpc_schema()` the service's schema.
fn descriptors(service: &Service) -> syn::Result<TokenStream> {
    let private = &service.private;
    let name = &service.name;
    let count = service.methods.len();
    let (callbacks, no_streams) = match &service.callbacks {
        Some(client) => {
            // Spanned at the callback service's name, where the compiler reports a failure.
            let span = client
                .segments
                .last()
                .map_or_else(Span::call_site, |s| s.ident.span());
            let check = quote_spanned! {span=>
                const _: () = ::core::assert!(
                    !<#client as #private::Client>::SERVICE.has_streams(),
                    "a callback service cannot take or return streams: its methods must be plain \
                     calls or one-way calls",
                );
            };
            (
                quote!(::core::option::Option::Some(<#client as #private::Client>::SERVICE)),
                check,
            )
        }
        None => (quote!(::core::option::Option::None), TokenStream::new()),
    };
    let methods = service.methods.iter().map(|method| {
        let id = method.id;
        let name = &method.name;
        let kind = match (method.kind, &method.output) {
            (Kind::Oneway, _) => quote!(Oneway),
            (Kind::Call, Output::Stream { .. }) => quote!(Stream),
            (Kind::Call, _) => quote!(Call),
        };
        let takes_stream = method.stream_arg().is_some();
        let idempotent = method.idempotent.is_some();
        quote! {
            #private::MethodDescriptor {
                id: #id,
                name: #name,
                kind: #private::MethodKind::#kind,
                takes_stream: #takes_stream,
                idempotent: #idempotent,
            }
        }
    });
    let schema_fn = schema::schema_fn(service);
    Ok(quote! {
        static __RPC_METHODS: [#private::MethodDescriptor; #count] = [#(#methods),*];
        static __RPC_SERVICE: #private::ServiceDescriptor = #private::ServiceDescriptor {
            name: #name,
            methods: &__RPC_METHODS,
            callbacks: #callbacks,
            schema: __rpc_schema,
        };
        #no_streams
        #schema_fn
    })
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::{expand, generate};

    fn expanded(attr: TokenStream, item: TokenStream) -> String {
        match generate(attr, item) {
            Ok(tokens) => tokens.to_string(),
            Err(e) => panic!("expected an expansion, got {e}"),
        }
    }

    #[test]
    fn renamed_crate_is_the_only_path_to_the_runtime() {
        let out = expanded(
            quote!(crate = "::renamed"),
            quote!(
                pub trait Calc {
                    async fn add(&self, a: i64) -> i64;
                }
            ),
        );
        assert!(!out.contains("rpc_core"), "{out}");
        assert!(out.contains(":: renamed :: __private :: Link"), "{out}");
    }

    #[test]
    fn default_path_is_absolute() {
        let out = expanded(
            TokenStream::new(),
            quote!(
                trait Calc {
                    async fn add(&self) -> i64;
                }
            ),
        );
        assert!(
            out.contains(":: rpc_core :: __private :: Dispatch"),
            "{out}"
        );
    }

    #[test]
    fn server_parameter_avoids_user_names() {
        let out = expanded(
            TokenStream::new(),
            quote!(
                trait Calc {
                    async fn add(&self, s: S) -> S;
                }
            ),
        );
        assert!(out.contains("struct CalcServer < __S >"), "{out}");
        let out = expanded(
            TokenStream::new(),
            quote!(
                trait Calc {
                    async fn add(&self, s: u8) -> u8;
                }
            ),
        );
        assert!(out.contains("struct CalcServer < S >"), "{out}");
    }

    #[test]
    fn method_ids_are_name_hashes_or_given() {
        let out = expanded(
            TokenStream::new(),
            quote!(
                trait Calc {
                    async fn a(&self);
                    #[rpc(id = 7)]
                    async fn b(&self);
                    #[rpc(oneway)]
                    async fn c(&self);
                }
            ),
        );
        let a = crate::schema::method_id("a");
        assert!(
            out.contains(&format!("id : {a}u32 , name : \"a\"")),
            "{out}"
        );
        assert!(out.contains("id : 7u32 , name : \"b\""), "{out}");
        let c = crate::schema::method_id("c");
        assert!(out.contains(&format!("id : {c}u32 , name : \"c\" , kind : :: rpc_core :: __private :: MethodKind :: Oneway")), "{out}");
    }

    /// Whatever the input, the macro answers with code or errors, never a panic.
    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: Vec<(TokenStream, TokenStream)> = vec![
            (quote!(), quote!()),
            (
                quote!(),
                quote!(
                    fn f() {}
                ),
            ),
            (quote!(), quote!(trait)),
            (quote!(), quote!(trait T { fn })),
            (quote!(), quote!(trait T { async fn f(&self) -> ; })),
            (
                quote!(name),
                quote!(
                    trait T {}
                ),
            ),
            (
                quote!(name =),
                quote!(
                    trait T {}
                ),
            ),
            (
                quote!(name = "a" name = "b"),
                quote!(
                    trait T {}
                ),
            ),
            (
                quote!(crate = ""),
                quote!(
                    trait T {}
                ),
            ),
            (
                quote!(= = =),
                quote!(
                    trait T {}
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        #[rpc()]
                        async fn f(&self);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        #[rpc(oneway(x))]
                        async fn f(&self);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        #[rpc(a::b)]
                        async fn f(&self);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        #[rpc = 1]
                        async fn f(&self);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self, ...);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(...);
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self) -> Result;
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self) -> Result<u8, u8, u8>;
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self) -> Result<'static, u8>;
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self) -> <u8 as X>::Result;
                    }
                ),
            ),
            (
                quote!(),
                quote!(
                    trait T {
                        async fn f(&self, x: [&u8; 3]) -> fn(&u8);
                    }
                ),
            ),
        ];
        for (attr, item) in cases {
            let result = std::panic::catch_unwind(|| {
                generate(attr.clone(), item.clone()).map(|t| t.to_string())
            });
            assert!(result.is_ok(), "panicked on #[service({attr})] {item}");
        }
    }

    /// A trait with errors is still emitted as written, without the attributes only the macro
    /// reads, so that its impls and uses add no errors of their own.
    #[test]
    fn a_trait_with_errors_is_kept_as_written() {
        let out = expand(
            quote!(),
            quote!(
                pub trait Store {
                    #[rpc(oneway)]
                    async fn put(&self, key: &str);
                }
            ),
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("pub trait Store"), "{out}");
        assert!(out.contains("async fn put"), "{out}");
        assert!(!out.contains("oneway"), "{out}");
        // Not a trait: only the error.
        let out = expand(
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(
            out.contains("compile_error") && !out.contains("struct"),
            "{out}"
        );
    }

    #[test]
    fn every_error_is_reported() {
        let Err(error) = generate(
            quote!(colour = "red"),
            quote!(
                trait T<X> {
                    fn a(self);
                    async fn clone(&self, b: &str);
                    const C: u8;
                }
            ),
        ) else {
            panic!("expected errors");
        };
        // option, generics, not async, receiver, reserved name, reference, const item
        assert_eq!(error.into_iter().count(), 7);
    }
}
