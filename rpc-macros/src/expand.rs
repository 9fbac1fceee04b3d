//! The pipeline: parse the trait into the model, check it, then generate the trait, the
//! descriptors, the client and the server.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Item;

use crate::ctxt::Errors;
use crate::model::{Kind, Service, ServiceOptions};
use crate::{check, client, fingerprint, server};

/// Expands `#[service(attr)] item`.
///
/// Returns every error found, or the code. On error nothing else is emitted: a half-generated
/// service would only add follow-on errors.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let options = ServiceOptions::parse(&mut errors, attr);
    let item = match syn::parse2::<Item>(item) {
        Ok(Item::Trait(item)) => item,
        Ok(_) => {
            errors.push(syn::Error::new(Span::call_site(), "`#[service]` applies to a trait"));
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
    let server_struct = server::struct_def(&service);
    let server_impls = server::impls(&service);
    Ok(quote! {
        #trait_def
        #client_struct
        #server_struct
        const _: () = {
            #descriptors
            #client_impls
            #server_impls
        };
    })
}

/// The trait as the server implements it: `Send + Sync + 'static`, each `async fn` turned into a
/// `fn` returning a `Send` future (an `async fn` in the impl satisfies it).
fn trait_def(service: &Service) -> TokenStream {
    let Service { attrs, vis, trait_token, ident, supertraits, .. } = service;
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
        quote! {
            #(#attrs)*
            #fn_token #name(#receiver, #(#args),*)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            #semi_token
        }
    });
    let mut body = TokenStream::new();
    service.brace_token.surround(&mut body, |body| body.extend(methods));
    quote! {
        #(#attrs)*
        #vis #trait_token #ident: #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static
        #body
    }
}

/// The hidden statics behind `ServiceDescriptor`: `__RPC_METHODS[i]` is method `i`.
fn descriptors(service: &Service) -> syn::Result<TokenStream> {
    let private = &service.private;
    let name = &service.name;
    let fingerprint = syn::LitInt::new(
        &format!("0x{:016x}", fingerprint::fingerprint(service)),
        Span::call_site(),
    );
    let count = service.methods.len();
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| {
            let index = u32::try_from(index)
                .map_err(|_| syn::Error::new_spanned(&method.sig.ident, "too many methods"))?;
            let name = &method.name;
            let kind = match method.kind {
                Kind::Call => quote!(Call),
                Kind::Oneway => quote!(Oneway),
            };
            Ok(quote! {
                #private::MethodDescriptor {
                    index: #index,
                    name: #name,
                    kind: #private::MethodKind::#kind,
                }
            })
        })
        .collect::<syn::Result<Vec<_>>>()?;
    Ok(quote! {
        static __RPC_METHODS: [#private::MethodDescriptor; #count] = [#(#methods),*];
        static __RPC_SERVICE: #private::ServiceDescriptor = #private::ServiceDescriptor {
            name: #name,
            fingerprint: #fingerprint,
            methods: &__RPC_METHODS,
        };
    })
}
