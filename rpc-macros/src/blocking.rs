//! The generated blocking client: `{Trait}BlockingClient`, one blocking method per service
//! method, over the async client.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Ident;

use crate::client::docs;
use crate::model::{Kind, Method, Output, Service};

/// The struct, outside the `const _` block so that users can name it.
pub(crate) fn struct_def(service: &Service) -> TokenStream {
    let Service {
        vis,
        ident,
        client_ident,
        blocking_ident,
        ..
    } = service;
    let doc = format!(
        " Blocking client for [`{ident}`], for threads without an async runtime (a GUI's \
         thread): each method blocks until the call completes or its deadline passes. Made by \
         `rpc_transport::blocking::connect`; the connection is driven by a background runtime. \
         Calling from inside an async runtime works too, but blocks that runtime's thread: use \
         [`{client_ident}`] there.\n\n Cheap to clone: clones share the connection."
    );
    quote! {
        #[doc = #doc]
        #vis struct #blocking_ident {
            client: #client_ident,
        }
    }
}

/// `Clone`, `Debug`, `BlockingClient` and the inherent methods, for the `const _` block.
pub(crate) fn impls(service: &Service) -> TokenStream {
    let Service {
        vis,
        client_ident,
        blocking_ident,
        private,
        ..
    } = service;
    let name = blocking_ident.to_string();
    let client = Ident::new("__client", Span::mixed_site());
    let formatter = Ident::new("__f", Span::mixed_site());
    let timeout = Ident::new("timeout", Span::mixed_site());
    let methods = service
        .methods
        .iter()
        .map(|method| blocking_method(service, method));
    quote! {
        #[automatically_derived]
        impl ::core::clone::Clone for #blocking_ident {
            fn clone(&self) -> Self {
                Self { client: ::core::clone::Clone::clone(&self.client) }
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #blocking_ident {
            fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #formatter.debug_struct(#name).field("client", &self.client).finish()
            }
        }

        #[automatically_derived]
        impl #private::BlockingClient for #blocking_ident {
            type Async = #client_ident;

            fn from_async(#client: #client_ident) -> Self {
                Self { client: #client }
            }

            fn as_async(&self) -> &#client_ident {
                &self.client
            }
        }

        impl #blocking_ident {
            /// A client on the same connection whose calls have deadline `timeout` from their
            /// start (`None`: no deadline).
            #[must_use]
            #vis fn with_timeout(
                &self,
                #timeout: ::core::option::Option<::core::time::Duration>,
            ) -> Self {
                Self { client: self.client.with_timeout(#timeout) }
            }

            #(#methods)*
        }
    }
}

fn blocking_method(service: &Service, method: &Method) -> TokenStream {
    let Service { vis, private, .. } = service;
    let ident = &method.sig.ident;
    let params = method.args.iter().map(|arg| {
        let (name, ty) = (&arg.ident, &arg.ty);
        match &arg.stream {
            Some(item) => quote! {
                #name: impl ::core::iter::IntoIterator<
                    Item = #item,
                    IntoIter: ::core::marker::Send + 'static,
                >
            },
            None => quote!(#name: #ty),
        }
    });
    let names: Vec<_> = method.args.iter().map(|arg| &arg.ident).collect();
    // A stream argument's items are sent as the server takes them, taken from the iterator on
    // a thread of their own: its `next` may block.
    let streams = method
        .args
        .iter()
        .filter(|arg| arg.stream.is_some())
        .map(|arg| {
            let name = &arg.ident;
            quote!(let #name = #private::iter_stream(#name);)
        });
    let output = match (&method.kind, &method.output) {
        (Kind::Oneway, _) | (Kind::Call, Output::Unit) => quote!(()),
        (Kind::Call, Output::Value) => method.return_type(),
        (Kind::Call, Output::Result { ok, err }) => quote!(::core::result::Result<#ok, #err>),
        (Kind::Call, Output::Stream { item }) => quote!(#private::StreamIter<#item>),
    };
    let client = Ident::new("__client", Span::mixed_site());
    let into_iter = matches!(method.output, Output::Stream { .. })
        .then(|| quote!(.map(#private::StreamIter::new)));
    let docs = docs(method);
    let carried = method.carried_attrs();
    let allow = (method.args.len() >= 6).then(|| quote!(#[allow(clippy::too_many_arguments)]));
    quote! {
        #(#docs)*
        #(#carried)*
        #allow
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#output, #private::RpcError> {
            #(#streams)*
            let #client = ::core::clone::Clone::clone(&self.client);
            // The async client's method, deprecated if this one is.
            #[allow(deprecated)]
            let #client = #private::block_on(async move { #client.#ident(#(#names),*).await #into_iter });
            #client
        }
    }
}
