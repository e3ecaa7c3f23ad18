//! Write [wasmfn](https://github.com/wasmfn/wasmfn) HTTP handlers in Rust.
//!
//! A handler is a plain function from [`Request`] to anything that implements
//! [`IntoResponse`]; the [`http`] attribute exports it as the standard
//! `wasi:http/incoming-handler`, so the component runs on wasmfn, `wasmtime serve` and any
//! other `wasi:http` host unchanged.
//!
//! ```ignore
//! use wasmfn_sdk::{Request, Response, Router};
//!
//! #[wasmfn_sdk::http]
//! fn handle(req: Request) -> Response {
//!     Router::new()
//!         .get("/hello/:name", |req: Request| format!("Hello, {}!", req.param("name").unwrap_or("you")))
//!         .handle(req)
//! }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to name in `wasmfn.toml`.
#![deny(missing_docs)]

mod error;
mod request;
mod response;
mod router;
pub mod variables;

pub use error::Error;
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use router::Router;

/// Exports a function as this component's HTTP handler.
///
/// The function takes a [`Request`] and returns anything that implements [`IntoResponse`]
/// (a [`Response`], a `String`, [`Json`], or a `Result` of those with [`Error`]).
pub use wasmfn_sdk_macro::http;

/// Bindings generated from `wit/` by wit-bindgen; the macros use them, handlers need not.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wasmfn:function/http-function",
        pub_export_macro: true,
        default_bindings_module: "::wasmfn_sdk::wit",
        generate_all,
    });
}

#[doc(hidden)]
pub mod __private;
