//! The generated client: `{Trait}Client`, one `async` method per service method.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Attribute, Expr, Ident, Lit, Meta};

use crate::model::{Kind, Method, Output, Service};

/// The struct, outside the `const _` block so that users can name it.
pub(crate) fn struct_def(service: &Service) -> TokenStream {
    let Service {
        vis,
        ident,
        client_ident,
        private,
        ..
    } = service;
    let doc = format!(
        " Client for [`{ident}`]: each method calls the service over a connection and returns \
         `Err(RpcError)` if the call could not complete.\n\n Cheap to clone: clones share the \
         connection."
    );
    quote! {
        #[doc = #doc]
        #vis struct #client_ident {
            handle: #private::Link,
        }
    }
}

/// `Clone`, `Debug`, `Client` and the inherent methods, for the `const _` block.
pub(crate) fn impls(service: &Service) -> TokenStream {
    let Service {
        vis,
        client_ident,
        private,
        ..
    } = service;
    let client_name = client_ident.to_string();
    let handle = Ident::new("__handle", Span::mixed_site());
    let formatter = Ident::new("__f", Span::mixed_site());
    let timeout = Ident::new("timeout", Span::mixed_site());
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| client_method(service, index, method));
    quote! {
        #[automatically_derived]
        impl ::core::clone::Clone for #client_ident {
            fn clone(&self) -> Self {
                Self { handle: ::core::clone::Clone::clone(&self.handle) }
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #client_ident {
            fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #formatter.debug_struct(#client_name).field("handle", &self.handle).finish()
            }
        }

        #[automatically_derived]
        impl #private::Client for #client_ident {
            const SERVICE: &'static #private::ServiceDescriptor = &__RPC_SERVICE;

            fn from_handle(#handle: impl ::core::convert::Into<#private::Link>) -> Self {
                Self { handle: ::core::convert::Into::into(#handle) }
            }

            fn handle(&self) -> &#private::Link {
                &self.handle
            }
        }

        impl #client_ident {
            /// A client on the same connection whose calls have deadline `timeout` from their
            /// start (`None`: no deadline).
            #[must_use]
            #vis fn with_timeout(
                &self,
                #timeout: ::core::option::Option<::core::time::Duration>,
            ) -> Self {
                Self { handle: self.handle.with_timeout(#timeout) }
            }

            #(#methods)*
        }
    }
}

fn client_method(service: &Service, index: usize, method: &Method) -> TokenStream {
    let Service { vis, private, .. } = service;
    let ident = &method.sig.ident;
    let params = method.args.iter().map(|arg| {
        let (name, ty) = (&arg.ident, &arg.ty);
        match &arg.stream {
            Some(item) => quote! {
                #name: impl #private::FuturesStream<Item = #item> + ::core::marker::Send + 'static
            },
            None => quote!(#name: #ty),
        }
    });
    let names: Vec<_> = method.value_args().map(|arg| &arg.ident).collect();
    // The call is spanned on the method's parameter list, so that a type that is not
    // `Serialize` is reported there rather than on `#[service]`.
    let span = method.sig.paren_token.span.join();
    let args = quote_spanned!(span=> &(#(#names,)*));
    let args_ty = method.args_tuple_type();
    let descriptor = quote_spanned!(span=> &__RPC_METHODS[#index]);
    // `&self` has the span of the body's `self`: with different spans, the body's would not
    // resolve to it when the trait comes from another macro's input (`macro_rules!`).
    let receiver = quote_spanned!(span=> &self);
    let (output, body) = match (&method.kind, &method.output, method.stream_arg()) {
        (Kind::Call, output, Some((stream, item))) => {
            let upload = quote!(#private::Stream::new(#stream));
            match output {
                Output::Unit | Output::Value => {
                    let ty = method.return_type();
                    (
                        ty.clone(),
                        quote_spanned!(span=> self.handle.call_uploading::<#args_ty, #item, #ty>(#descriptor, #args, #upload).await),
                    )
                }
                Output::Result { ok, err } => (
                    quote!(::core::result::Result<#ok, #err>),
                    quote_spanned!(span=> self.handle.call_fallible_uploading::<#args_ty, #item, #ok, #err>(#descriptor, #args, #upload).await),
                ),
                Output::Stream { item: out } => (
                    quote!(#private::StreamReceiver<#out>),
                    quote_spanned!(span=> self.handle.open_stream_uploading::<#args_ty, #item, #out>(#descriptor, #args, #upload).await),
                ),
            }
        }
        (Kind::Oneway, _, _) => (
            quote!(()),
            quote_spanned!(span=> self.handle.notify::<#args_ty>(#descriptor, #args).await),
        ),
        (Kind::Call, Output::Unit, None) => (
            quote!(()),
            quote_spanned!(span=> self.handle.call::<#args_ty, ()>(#descriptor, #args).await),
        ),
        (Kind::Call, Output::Value, None) => {
            let ty = method.return_type();
            (
                ty.clone(),
                quote_spanned!(span=> self.handle.call::<#args_ty, #ty>(#descriptor, #args).await),
            )
        }
        (Kind::Call, Output::Result { ok, err }, None) => (
            quote!(::core::result::Result<#ok, #err>),
            quote_spanned!(span=> self.handle.call_fallible::<#args_ty, #ok, #err>(#descriptor, #args).await),
        ),
        (Kind::Call, Output::Stream { item }, None) => (
            quote!(#private::StreamReceiver<#item>),
            quote_spanned!(span=> self.handle.open_stream::<#args_ty, #item>(#descriptor, #args).await),
        ),
    };
    let rpc_error = quote!(#private::RpcError);
    let docs = docs(method);
    let carried = method.carried_attrs();
    // Clippy's limit is 7 parameters, `&self` included; the trait method already says so.
    let allow = (method.args.len() >= 6).then(|| quote!(#[allow(clippy::too_many_arguments)]));
    quote! {
        #(#docs)*
        #(#carried)*
        #allow
        #vis async fn #ident(#receiver, #(#params),*) -> ::core::result::Result<#output, #rpc_error> {
            #body
        }
    }
}

/// The method's own docs, or a generated line, then an `# Errors` section for the framework's
/// errors (as a paragraph under the user's own `# Errors` heading if there is one).
pub(crate) fn docs(method: &Method) -> Vec<TokenStream> {
    let own: Vec<&Attribute> = method.docs().collect();
    let mut docs: Vec<TokenStream> = own.iter().map(|attr| quote!(#attr)).collect();
    // `#[doc(alias = ...)]` and `#[doc(hidden)]` are not text: a method with only those gets the
    // generated summary line too.
    if !own
        .iter()
        .any(|attr| matches!(attr.meta, Meta::NameValue(_)))
    {
        let line = match method.kind {
            Kind::Call => format!(" Calls `{}` on the server.", method.name),
            Kind::Oneway => format!(
                " Sends `{}` to the server without waiting for it (one-way).",
                method.name
            ),
        };
        docs.push(quote!(#[doc = #line]));
    }
    let has_errors_heading = own.iter().any(|attr| {
        doc_text(attr).is_some_and(|text| text.lines().any(|line| line.trim() == "# Errors"))
    });
    let errors = match (method.kind, &method.output) {
        (Kind::Oneway, _) => {
            " `Err(RpcError)` if the connection is closed or the arguments cannot be sent. The \
             method's own completion is not reported."
        }
        (Kind::Call, Output::Stream { .. }) => {
            " `Err(RpcError)` if the stream could not be opened: connection, deadline, encoding, \
             or the server could not run the method. Items that fail later are `Err` items of \
             the stream."
        }
        (Kind::Call, Output::Result { .. }) => {
            " The outer `Err(RpcError)` if the call could not complete (connection, deadline, \
             encoding, or the server could not run it); the inner `Result` is the method's own."
        }
        (Kind::Call, _) => {
            " `Err(RpcError)` if the call could not complete: connection, deadline, encoding, or \
             the server could not run it."
        }
    };
    docs.push(quote!(#[doc = ""]));
    if !has_errors_heading {
        docs.push(quote!(#[doc = " # Errors"]));
        docs.push(quote!(#[doc = ""]));
    }
    docs.push(quote!(#[doc = #errors]));
    docs
}

fn doc_text(attr: &Attribute) -> Option<String> {
    let Meta::NameValue(meta) = &attr.meta else {
        return None;
    };
    match &meta.value {
        Expr::Lit(expr) => match &expr.lit {
            Lit::Str(lit) => Some(lit.value()),
            _ => None,
        },
        _ => None,
    }
}
