//! Attribute macros of `wasmfn-sdk`; use them through `wasmfn_sdk::http`.

use proc_macro::TokenStream;
use quote::quote;

/// Exports a `fn(Request) -> impl IntoResponse` as the component's
/// `wasi:http/incoming-handler`. See `wasmfn_sdk::http`.
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[wasmfn_sdk::http] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let func = syn::parse_macro_input!(item as syn::ItemFn);
    if func.sig.asyncness.is_some() {
        return syn::Error::new_spanned(
            func.sig.fn_token,
            "HTTP handlers are plain functions, not async",
        )
        .to_compile_error()
        .into();
    }
    let name = &func.sig.ident;
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
            ::wasmfn_sdk::wit::export!(Handler with_types_in ::wasmfn_sdk::wit);
        }
    }
    .into()
}
