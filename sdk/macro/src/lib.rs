//! Attribute macros of `wasmfn-sdk`; use them through `wasmfn_sdk::http` and
//! `wasmfn_sdk::event`.

use proc_macro::TokenStream;
use quote::quote;

/// Exports a `fn(Request) -> impl IntoResponse` as the component's
/// `wasi:http/incoming-handler` (for every host), and as `wasmfn:function/http-handler`
/// (wasmfn's one-call fast path); an `async fn` as WASI 0.3's `wasi:http/handler`. See
/// `wasmfn_sdk::http`.
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = match handler("http", attr, item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let name = &func.sig.ident;
    if func.sig.asyncness.is_some() {
        return quote! {
            #func

            #[doc(hidden)]
            mod __wasmfn_http_export {
                struct Handler;
                impl ::wasmfn_sdk::p3::__private::wasip3::exports::http::handler::Guest for Handler {
                    async fn handle(
                        request: ::wasmfn_sdk::p3::__private::wasip3::http::types::Request,
                    ) -> Result<
                        ::wasmfn_sdk::p3::__private::wasip3::http::types::Response,
                        ::wasmfn_sdk::p3::__private::wasip3::http::types::ErrorCode,
                    > {
                        ::wasmfn_sdk::p3::__private::serve(request, super::#name).await
                    }
                }
                ::wasmfn_sdk::p3::__private::wasip3::http::service::export!(Handler);
            }
        }
        .into();
    }
    quote! {
        #func

        #[doc(hidden)]
        mod __wasmfn_http_export {
            struct Handler;
            impl ::wasmfn_sdk::wit::exports::wasi::http::incoming_handler::Guest for Handler {
                fn handle(
                    request: ::wasmfn_sdk::wit::wasi::http::types::IncomingRequest,
                    response_out: ::wasmfn_sdk::wit::wasi::http::types::ResponseOutparam,
                ) {
                    ::wasmfn_sdk::__private::serve(request, response_out, super::#name);
                }
            }
            impl ::wasmfn_sdk::wit::exports::wasmfn::function::http_handler::Guest for Handler {
                fn handle(
                    request: ::wasmfn_sdk::wit::exports::wasmfn::function::http_handler::Request,
                ) -> ::wasmfn_sdk::wit::exports::wasmfn::function::http_handler::Response {
                    ::wasmfn_sdk::__private::serve_whole(request, super::#name)
                }
            }
            ::wasmfn_sdk::wit::export!(Handler with_types_in ::wasmfn_sdk::wit);
        }
    }
    .into()
}

/// Exports a `fn(CloudEvent) -> impl IntoEventResult` as the component's
/// `wasmfn:function/event-handler@0.1.0`; an `async fn` as WASI 0.3's
/// `wasmfn:function/event-handler@0.2.0`. See `wasmfn_sdk::event`.
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = match handler("event", attr, item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let name = &func.sig.ident;
    if func.sig.asyncness.is_some() {
        return quote! {
            #func

            #[doc(hidden)]
            mod __wasmfn_event_export {
                use ::wasmfn_sdk::wit::wasmfn::function::types::{CloudEvent, HandlerError};
                struct Handler;
                impl ::wasmfn_sdk::p3::wit::events::exports::wasmfn::function::event_handler::Guest for Handler {
                    async fn handle(event: CloudEvent) -> Result<Option<CloudEvent>, HandlerError> {
                        ::wasmfn_sdk::p3::__private::handle_event(event, super::#name).await
                    }
                }
                ::wasmfn_sdk::p3::wit::events::export!(Handler with_types_in ::wasmfn_sdk::p3::wit::events);
            }
        }
        .into();
    }
    quote! {
        #func

        #[doc(hidden)]
        mod __wasmfn_event_export {
            use ::wasmfn_sdk::wit::wasmfn::function::types::{CloudEvent, HandlerError};
            struct Handler;
            impl ::wasmfn_sdk::wit::events::exports::wasmfn::function::event_handler::Guest for Handler {
                fn handle(event: CloudEvent) -> Result<Option<CloudEvent>, HandlerError> {
                    ::wasmfn_sdk::__private::handle_event(event, super::#name)
                }
            }
            ::wasmfn_sdk::wit::events::export!(Handler with_types_in ::wasmfn_sdk::wit::events);
        }
    }
    .into()
}

fn handler(kind: &str, attr: TokenStream, item: TokenStream) -> syn::Result<syn::ItemFn> {
    if !attr.is_empty() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            format!("#[wasmfn_sdk::{kind}] takes no arguments"),
        ));
    }
    // A plain `fn` is a WASI 0.2 handler, an `async fn` a WASI 0.3 one.
    syn::parse(item)
}
