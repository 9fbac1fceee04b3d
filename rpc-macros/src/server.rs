//! The generated server: `{Trait}Server<S>`, the dispatcher for any `S: Trait`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Ident;

use crate::model::{respan, Kind, Method, Output, Service};

/// The struct, outside the `const _` block so that users can name it.
pub(crate) fn struct_def(service: &Service) -> TokenStream {
    let Service {
        vis,
        ident,
        server_ident,
        server_param,
        private,
        ..
    } = service;
    let doc = format!(
        " Server for [`{ident}`]: decodes each call, runs it on the service it holds and encodes \
         the result.\n\n Hand it to the server engine; it is cheap to clone (an `Arc`)."
    );
    quote! {
        #[doc = #doc]
        #vis struct #server_ident<#server_param> {
            service: #private::Arc<#server_param>,
        }
    }
}

/// `Clone`, `Debug`, the constructors and `Dispatch`, for the `const _` block.
pub(crate) fn impls(service: &Service) -> TokenStream {
    let Service {
        vis,
        ident,
        server_ident,
        server_param: s,
        private,
        ..
    } = service;
    let server_name = server_ident.to_string();
    let local = |name: &str| Ident::new(name, Span::mixed_site());
    let (service_arg, formatter) = (local("service"), local("__f"));
    let (method_id, args, limits) = (local("__method"), local("__args"), local("__limits"));
    let incoming = local("__incoming");

    let arms = service.methods.iter().map(|method| {
        let id = Literal::u32_unsuffixed(method.id);
        let body = arm(service, method, [&method_id, &args, &limits, &incoming]);
        quote!(#id => #body,)
    });
    let unknown = quote! {
        ::core::result::Result::Err(#private::DispatchError::UnknownMethod(#method_id))
    };
    let dispatch_body = if service.methods.is_empty() {
        quote! {
            let _ = (#args, #limits, #incoming);
            #unknown
        }
    } else {
        quote! {
            match #method_id {
                #(#arms)*
                _ => #unknown,
            }
        }
    };

    quote! {
        #[automatically_derived]
        impl<#s> ::core::clone::Clone for #server_ident<#s> {
            fn clone(&self) -> Self {
                Self { service: ::core::clone::Clone::clone(&self.service) }
            }
        }

        #[automatically_derived]
        impl<#s> ::core::fmt::Debug for #server_ident<#s> {
            fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #formatter.debug_struct(#server_name).finish_non_exhaustive()
            }
        }

        // The trait, or a method of it, may be deprecated: its server is not.
        #[allow(deprecated)]
        impl<#s: #ident> #server_ident<#s> {
            /// A server that runs every call on `service`.
            #[must_use]
            #vis fn new(#service_arg: #s) -> Self {
                Self { service: #private::Arc::new(#service_arg) }
            }

            /// A server that runs every call on a service shared with other code.
            #[must_use]
            #vis fn from_arc(#service_arg: #private::Arc<#s>) -> Self {
                Self { service: #service_arg }
            }
        }

        #[automatically_derived]
        #[allow(deprecated)]
        impl<#s: #ident> #private::Dispatch for #server_ident<#s> {
            fn descriptor(&self) -> &'static #private::ServiceDescriptor {
                &__RPC_SERVICE
            }

            fn dispatch(
                &self,
                #method_id: ::core::primitive::u32,
                #args: &[::core::primitive::u8],
                #limits: &#private::DecodeLimits,
                #incoming: ::core::option::Option<#private::Incoming>,
            ) -> ::core::result::Result<#private::HandlerFuture, #private::DispatchError> {
                #dispatch_body
            }
        }
    }
}

/// The match arm of one method: decode the argument tuple now (a bad frame is the caller's
/// error), take the stream from the client if the method has one, run the method in the
/// returned future.
fn arm(
    service: &Service,
    method: &Method,
    [method_id, args, limits, incoming]: [&Ident; 4],
) -> TokenStream {
    let Service {
        ident: trait_ident,
        server_param: s,
        private,
        ..
    } = service;
    let name = &method.sig.ident;
    let shared = Ident::new("__service", Span::mixed_site());
    let future = Ident::new("__future", Span::mixed_site());
    let values: Vec<Ident> = (0..method.args.len())
        .map(|i| Ident::new(&format!("__arg{i}"), Span::mixed_site()))
        .collect();
    let decoded: Vec<&Ident> = values
        .iter()
        .zip(&method.args)
        .filter(|(_, arg)| arg.stream.is_none())
        .map(|(value, _)| value)
        .collect();
    let args_ty = method.args_tuple_type();
    let decode = quote!(#private::decode_args::<#args_ty>(#args, #limits)?);
    let decode = if decoded.is_empty() {
        quote!(#decode;)
    } else {
        quote!(let (#(#decoded,)*) = #decode;)
    };
    let stream = values
        .iter()
        .zip(&method.args)
        .find_map(|(value, arg)| Some((value, arg.stream.as_ref()?)))
        .map(|(value, item)| {
            quote! {
                let #value = #private::incoming_stream::<#item>(#incoming, #method_id)?;
            }
        });
    let call = quote!(<#s as #trait_ident>::#name(&#shared, #(#values),*).await);
    let outcome = match (method.kind, &method.output) {
        (Kind::Oneway, _) => quote! {
            #call;
            #private::Outcome::NoReply
        },
        // Spanned on the result type (and naming it), so that a type that is not `Serialize` is
        // reported there.
        (Kind::Call, Output::Result { ok, err }) => {
            let span = method.return_span();
            let private = respan(private.clone(), span);
            quote_spanned!(span=> #private::Outcome::from_result::<#ok, #err>(&#call))
        }
        (Kind::Call, Output::Stream { item }) => {
            let span = method.return_span();
            let private = respan(private.clone(), span);
            quote_spanned!(span=> #private::Outcome::stream::<#item>(#call))
        }
        (Kind::Call, Output::Unit | Output::Value) => {
            let span = method.return_span();
            let private = respan(private.clone(), span);
            let ty = method.return_type();
            quote_spanned!(span=> #private::Outcome::ok::<#ty>(&#call))
        }
    };
    quote! {{
        #decode
        #stream
        let #shared = ::core::clone::Clone::clone(&self.service);
        let #future: #private::HandlerFuture = #private::Box::pin(async move { #outcome });
        ::core::result::Result::Ok(#future)
    }}
}
