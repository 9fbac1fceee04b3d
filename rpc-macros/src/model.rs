//! The service as the macro sees it: the trait parsed into a [`Service`] and its [`Method`]s.
//!
//! Building the model only fails on attributes it cannot read (`#[service(...)]`,
//! `#[rpc(...)]`); everything else is kept as written, spans included, and judged by
//! [`crate::check`].

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, FnArg, Generics, Ident, ItemTrait, LitStr, Pat, ReturnType, Signature, Token,
    TraitItem, TraitItemFn, Type, TypeParamBound, Visibility,
};

use crate::ctxt::Errors;

mod output;

pub(crate) use output::{stream_item, Output};

/// The options of `#[service(...)]`.
#[derive(Default)]
pub(crate) struct ServiceOptions {
    /// `name = "..."`: the service's name in the handshake.
    name: Option<LitStr>,
    /// `crate = "..."`: the path of `rpc_core` when the dependency is renamed.
    krate: Option<syn::Path>,
    /// `callbacks = Trait`: the service the server calls back on the client.
    callbacks: Option<syn::Path>,
}

impl ServiceOptions {
    /// Reads the tokens inside `#[service(...)]`, recording every mistake.
    pub(crate) fn parse(errors: &mut Errors, attr: TokenStream) -> Self {
        let mut options = Self::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if options.name.is_some() {
                    errors.push(meta.error("duplicate `name` option"));
                } else {
                    options.name = Some(lit);
                }
            } else if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                match lit.parse::<syn::Path>() {
                    Err(e) => errors.spanned(&lit, format_args!("`crate` must name a path: {e}")),
                    Ok(_) if options.krate.is_some() => {
                        errors.push(meta.error("duplicate `crate` option"));
                    }
                    Ok(path) => options.krate = Some(path),
                }
            } else if meta.path.is_ident("callbacks") {
                let path: syn::Path = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`callbacks` names the trait of the callback service: `callbacks = Prompt`",
                    )
                })?;
                if options.callbacks.is_some() {
                    errors.push(meta.error("duplicate `callbacks` option"));
                } else {
                    options.callbacks = Some(path);
                }
            } else {
                errors.push(meta.error(format_args!(
                    "unknown `service` option `{}`: expected `name = \"...\"`, `crate = \"...\"` \
                     or `callbacks = Trait`",
                    path_string(&meta.path),
                )));
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(e) = parser.parse2(attr) {
            errors.push(e);
        }
        options
    }
}

/// A trait under `#[service]`.
pub(crate) struct Service {
    /// `crate = "..."`: the path of `rpc_core` when the dependency is renamed.
    pub(crate) krate: Option<syn::Path>,
    /// The trait's attributes (docs included), as written.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) unsafety: Option<Token![unsafe]>,
    pub(crate) auto_token: Option<Token![auto]>,
    pub(crate) trait_token: Token![trait],
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) supertraits: Punctuated<TypeParamBound, Token![+]>,
    /// The trait's braces, reused so that lints on the trait point at the user's trait.
    pub(crate) brace_token: syn::token::Brace,
    /// The name sent in the handshake: the trait's name unless renamed.
    pub(crate) name: String,
    /// The `name = "..."` literal, if the service was renamed (for error spans).
    pub(crate) name_lit: Option<LitStr>,
    /// The path of `rpc_core`'s hidden module, as generated code writes it.
    pub(crate) private: TokenStream,
    /// `{Trait}Client`.
    pub(crate) client_ident: Ident,
    /// The client type of the callback service (`callbacks = Prompt` gives `PromptClient`).
    pub(crate) callbacks: Option<syn::Path>,
    /// `{Trait}BlockingClient`.
    pub(crate) blocking_ident: Ident,
    /// `{Trait}Server`.
    pub(crate) server_ident: Ident,
    /// The name of the server's type parameter: `S`, unless the trait already uses that name.
    pub(crate) server_param: Ident,
    /// The methods, in the trait's order.
    pub(crate) methods: Vec<Method>,
    /// Items of the trait that are not methods (rejected by the checks).
    pub(crate) unsupported: Vec<TraitItem>,
}

impl Service {
    /// The path of `rpc_core` if the service names it otherwise.
    pub(crate) fn krate(&self) -> Option<&syn::Path> {
        self.krate.as_ref()
    }

    /// Builds the model of `item`, recording unreadable attributes in `errors`.
    pub(crate) fn from_trait(
        errors: &mut Errors,
        options: ServiceOptions,
        item: ItemTrait,
    ) -> Self {
        let server_param = if mentions_ident(quote!(#item), "S") {
            format_ident!("__S")
        } else {
            format_ident!("S")
        };
        let bare = item.ident.unraw();
        let mut methods = Vec::new();
        let mut unsupported = Vec::new();
        for trait_item in item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    methods.push(Method::from_item(errors, f, options.krate.as_ref()))
                }
                other => unsupported.push(other),
            }
        }
        let private = match &options.krate {
            Some(path) => quote!(#path::__private),
            None => quote!(::rpc_core::__private),
        };
        let callbacks = options.callbacks.map(|mut path| {
            if let Some(last) = path.segments.last_mut() {
                last.ident =
                    format_ident!("{}Client", last.ident.unraw(), span = last.ident.span());
            }
            path
        });
        Self {
            callbacks,
            krate: options.krate,
            attrs: item.attrs,
            vis: item.vis,
            unsafety: item.unsafety,
            auto_token: item.auto_token,
            trait_token: item.trait_token,
            name: options
                .name
                .as_ref()
                .map_or_else(|| bare.to_string(), LitStr::value),
            name_lit: options.name,
            private,
            client_ident: format_ident!("{}Client", bare, span = item.ident.span()),
            blocking_ident: format_ident!("{}BlockingClient", bare, span = item.ident.span()),
            server_ident: format_ident!("{}Server", bare, span = item.ident.span()),
            server_param,
            ident: item.ident,
            generics: item.generics,
            supertraits: item.supertraits,
            brace_token: item.brace_token,
            methods,
            unsupported,
        }
    }
}

/// Whether a method answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// The client waits for a reply.
    Call,
    /// `#[rpc(oneway)]`: the client does not wait and nothing is sent back.
    Oneway,
}

/// One method of the trait.
pub(crate) struct Method {
    /// The method's attributes minus `#[rpc(...)]`, docs included.
    pub(crate) attrs: Vec<Attribute>,
    /// The signature as written, for the checks and their spans.
    pub(crate) sig: Signature,
    /// A default body, if one was written (rejected by the checks).
    pub(crate) default: Option<Block>,
    /// The closing `;` as written, if there was no body.
    pub(crate) semi_token: Option<Token![;]>,
    /// The name in descriptors and the schema (`r#` removed).
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// The wire id: `#[rpc(id = N)]`, else a hash of the name.
    pub(crate) id: u32,
    /// The `id = N` literal, if one was written (for error spans).
    pub(crate) id_lit: Option<syn::LitInt>,
    /// `#[rpc(idempotent)]`, as written: a session may send the call again after a reconnect.
    pub(crate) idempotent: Option<syn::Path>,
    /// The arguments after the receiver.
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
}

impl Method {
    fn from_item(errors: &mut Errors, item: TraitItemFn, krate: Option<&syn::Path>) -> Self {
        let TraitItemFn {
            attrs,
            sig,
            default,
            semi_token,
        } = item;
        let mut kind = Kind::Call;
        let mut id_lit: Option<syn::LitInt> = None;
        let mut idempotent: Option<syn::Path> = None;
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs {
            if !attr.path().is_ident("rpc") {
                kept.push(attr);
                continue;
            }
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("oneway") {
                    if kind == Kind::Oneway {
                        errors.push(meta.error("duplicate `oneway` option"));
                    }
                    kind = Kind::Oneway;
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        errors.push(meta.error("`oneway` takes no value: write `#[rpc(oneway)]`"));
                        skip_value(&meta)?;
                    }
                } else if meta.path.is_ident("id") {
                    let lit: syn::LitInt = meta.value()?.parse()?;
                    if lit.base10_parse::<u32>().is_err() {
                        errors.spanned(&lit, "a method id is a `u32`");
                    } else if id_lit.is_some() {
                        errors.push(meta.error("duplicate `id` option"));
                    } else {
                        id_lit = Some(lit);
                    }
                } else if meta.path.is_ident("idempotent") {
                    if idempotent.is_some() {
                        errors.push(meta.error("duplicate `idempotent` option"));
                    }
                    idempotent = Some(meta.path.clone());
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        errors.push(
                            meta.error("`idempotent` takes no value: write `#[rpc(idempotent)]`"),
                        );
                        skip_value(&meta)?;
                    }
                } else {
                    errors.push(meta.error(format_args!(
                        "unknown `rpc` option `{}`: expected `oneway`, `idempotent` or `id = N`",
                        path_string(&meta.path),
                    )));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }
        let args = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Receiver(_) => None,
                FnArg::Typed(typed) => Some(Arg {
                    stream: stream_item(&typed.ty, krate).map(|item| Box::new(item.clone())),
                    attrs: typed.attrs.clone(),
                    ident: match &*typed.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                            Some(p.ident.clone())
                        }
                        _ => None,
                    },
                    pat: (*typed.pat).clone(),
                    ty: (*typed.ty).clone(),
                }),
            })
            .collect();
        let name = sig.ident.unraw().to_string();
        let id = id_lit
            .as_ref()
            .and_then(|lit| lit.base10_parse::<u32>().ok())
            .unwrap_or_else(|| crate::schema::method_id(&name));
        Self {
            attrs: kept,
            id,
            id_lit,
            name,
            kind,
            idempotent,
            args,
            output: Output::of(&sig.output, krate),
            default,
            semi_token,
            sig,
        }
    }

    /// The method's declared result type: what the trait's future outputs.
    pub(crate) fn return_type(&self) -> TokenStream {
        match &self.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        }
    }

    /// The argument tuple's type, `(A, B,)`, its parentheses spanned on the method's own
    /// parameter list so that a missing `Serialize` or `Deserialize` is reported there. A
    /// stream argument is not in it: its items follow the call.
    pub(crate) fn args_tuple_type(&self) -> TokenStream {
        let types = self.value_args().map(|arg| &arg.ty);
        quote_spanned!(self.sig.paren_token.span.join()=> (#(#types,)*))
    }

    /// The arguments that travel in the call's tuple: all but a stream.
    pub(crate) fn value_args(&self) -> impl Iterator<Item = &Arg> {
        self.args.iter().filter(|arg| arg.stream.is_none())
    }

    /// The stream argument's name and item type, if the method takes a stream.
    pub(crate) fn stream_arg(&self) -> Option<(&Option<Ident>, &Type)> {
        self.args
            .iter()
            .find_map(|arg| Some((&arg.ident, &**arg.stream.as_ref()?)))
    }

    /// The span that errors about the result type should point at: the type, or the method's
    /// name when there is none.
    pub(crate) fn return_span(&self) -> Span {
        match &self.sig.output {
            ReturnType::Default => self.sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        }
    }

    /// The `#[doc]` attributes.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|attr| attr.path().is_ident("doc"))
    }

    /// The attributes the clients' methods carry too: `#[deprecated]`, so that their callers
    /// are told; `#[allow]`, since they repeat the method's name and types; and a `#[cfg_attr]`
    /// that adds only those two. Other attributes stay on the trait's method.
    pub(crate) fn carried_attrs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|attr| {
            let path = attr.path();
            path.is_ident("deprecated")
                || path.is_ident("allow")
                || adds_only(attr, &["allow", "deprecated"])
        })
    }
}

/// An argument after the receiver.
pub(crate) struct Arg {
    pub(crate) attrs: Vec<Attribute>,
    /// The name, if the pattern is a plain name (`mut` allowed); `None` for other patterns.
    pub(crate) ident: Option<Ident>,
    pub(crate) pat: Pat,
    pub(crate) ty: Type,
    /// The item type if the argument is a stream (`Stream<T>`) from the client.
    pub(crate) stream: Option<Box<Type>>,
}

/// Consumes the value of an option the parser does not know (`= expr` or `(...)`), so that the
/// options after it are still read.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn path_string(path: &syn::Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

/// Whether `tokens` contain the identifier `name` anywhere.
fn mentions_ident(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == name,
        TokenTree::Group(group) => mentions_ident(group.stream(), name),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// `tokens` with every span set to `span`, so that the compiler reports errors in them there.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// Whether `attr` is a `#[cfg_attr(condition, ...)]` that adds only attributes named in `names`
/// (and at least one).
pub(crate) fn adds_only(attr: &Attribute, names: &[&str]) -> bool {
    use syn::punctuated::Punctuated;
    if !attr.path().is_ident("cfg_attr") {
        return false;
    }
    let Ok(metas) = attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
    else {
        return false;
    };
    metas.len() > 1
        && metas
            .iter()
            .skip(1)
            .all(|meta| names.iter().any(|name| meta.path().is_ident(name)))
}
