//! The interface fingerprint: a 64-bit FNV-1a hash of the service's shape, computed when the
//! macro runs and compared in the handshake.
//!
//! postcard is not self-describing, so a client and a server built from different versions of a
//! trait would otherwise decode each other's bytes silently wrong. The hash covers, in order:
//!
//! ```text
//! service <name>
//! <kind> <method>(<argument type>,<argument type>,...)-><result type>
//! ...
//! ```
//!
//! one line per method in trait order, `<kind>` being `call` or `oneway`, the result `()` when
//! none is written, and each type written as its tokens with all whitespace removed
//! (`Vec < u8 >` becomes `Vec<u8>`). Argument *names* are not part of it: renaming an argument
//! keeps the wire format, so it keeps the fingerprint.
//!
//! # What it cannot see
//!
//! The macro sees type *names*, not type *definitions*. Adding a field to a struct used as an
//! argument changes the wire format but not the fingerprint; spelling the same type two ways
//! (`String` and `std::string::String`, or through an alias) changes the fingerprint but not the
//! wire format. Version a service whose argument types change by renaming it
//! (`#[service(name = "calc.v2")]`) or by changing a method.

use crate::model::{Kind, Method, Output, Service};

/// The canonical text that is hashed (see the module docs).
pub(crate) fn canonical(service: &Service) -> String {
    let mut text = format!("service {}\n", service.name);
    for method in &service.methods {
        text.push_str(&method_line(method));
        text.push('\n');
    }
    text
}

fn method_line(method: &Method) -> String {
    let kind = match (method.kind, &method.output) {
        (Kind::Oneway, _) => "oneway",
        (Kind::Call, Output::Stream { .. }) => "stream",
        (Kind::Call, _) => "call",
    };
    let args: Vec<String> = method.args.iter().map(|arg| compact(&arg.ty)).collect();
    format!(
        "{kind} {}({})->{}",
        method.name,
        args.join(","),
        compact(&method.return_type())
    )
}

/// A type's tokens with every whitespace character removed.
fn compact<T: quote::ToTokens>(tokens: &T) -> String {
    let mut text = tokens.to_token_stream().to_string();
    text.retain(|c| !c.is_whitespace());
    text
}

/// The fingerprint of `service`.
pub(crate) fn fingerprint(service: &Service) -> u64 {
    fnv1a64(canonical(service).as_bytes())
}

/// 64-bit FNV-1a.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::{canonical, fingerprint, fnv1a64};
    use crate::ctxt::Errors;
    use crate::model::{Service, ServiceOptions};

    fn service(attr: TokenStream, item: TokenStream) -> Service {
        let mut errors = Errors::default();
        let options = ServiceOptions::parse(&mut errors, attr);
        let item = syn::parse2(item).expect("test input is a trait");
        let service = Service::from_trait(&mut errors, options, item);
        errors.finish().expect("test input has valid attributes");
        service
    }

    fn fp(item: TokenStream) -> u64 {
        fingerprint(&service(TokenStream::new(), item))
    }

    fn calculator() -> TokenStream {
        quote! {
            pub trait Calculator {
                /// Adds.
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        }
    }

    #[test]
    fn fnv1a64_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn canonical_text_is_documented_format() {
        assert_eq!(
            canonical(&service(TokenStream::new(), calculator())),
            "service Calculator\n\
             call add(i64,i64)->i64\n\
             call divide(f64,f64)->Result<f64,CalcError>\n\
             oneway log(String)->()\n"
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        // Pinned (checked against an independent FNV-1a of the canonical text): if this changes,
        // clients and servers built by different versions of the macro stop agreeing.
        assert_eq!(fp(calculator()), 0xb736_7cc1_30a4_fff2);
    }

    #[test]
    fn whitespace_and_docs_do_not_matter() {
        let spaced = quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result < f64 , CalcError >;
                #[rpc(oneway)]
                async fn log(&self, line: String) -> ();
            }
        };
        assert_eq!(fp(spaced), fp(calculator()));
    }

    #[test]
    fn argument_names_do_not_matter() {
        let renamed = quote! {
            pub trait Calculator {
                async fn add(&self, x: i64, y: i64) -> i64;
                async fn divide(&self, numerator: f64, mut denominator: f64) -> Result<f64, CalcError>;
                #[rpc(oneway)]
                async fn log(&self, message: String);
            }
        };
        assert_eq!(fp(renamed), fp(calculator()));
    }

    #[test]
    fn argument_type_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i32) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }

    #[test]
    fn return_type_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, OtherError>;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }

    #[test]
    fn method_name_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn plus(&self, a: i64, b: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }

    #[test]
    fn method_order_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                async fn add(&self, a: i64, b: i64) -> i64;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }

    #[test]
    fn kind_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }

    #[test]
    fn service_name_changes_it() {
        let renamed = service(quote!(name = "calc.v2"), calculator());
        assert_eq!(renamed.name, "calc.v2");
        assert_ne!(fingerprint(&renamed), fp(calculator()));
    }

    #[test]
    fn adding_an_argument_changes_it() {
        let changed = quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i64, c: i64) -> i64;
                async fn divide(&self, a: f64, b: f64) -> Result<f64, CalcError>;
                #[rpc(oneway)]
                async fn log(&self, line: String);
            }
        };
        assert_ne!(fp(changed), fp(calculator()));
    }
}
