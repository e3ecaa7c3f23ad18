//! Write [wasmfn](https://github.com/wasmfn/wasmfn) HTTP and CloudEvents handlers in Rust.
//!
//! An HTTP handler is a plain function from [`Request`] to anything that implements
//! [`IntoResponse`]; the [`http`] attribute exports it as the standard
//! `wasi:http/incoming-handler`, so the component runs on any `wasi:http` host that provides
//! its imports, and also as `wasmfn:function/http-handler`, the one-call fast path wasmfn
//! takes when a request's body is small and of known length.
//!
//! An event handler is a plain function from [`CloudEvent`] to an optional reply; the
//! [`event`] attribute exports it as `wasmfn:function/event-handler`. [`emit`] sends further
//! events. One component may have both handlers.
//!
//! A handler reaches what its manifest entry grants through the standard interfaces:
//! [`kv`] (key-value stores), [`outbound`] (HTTP to allowed hosts and to other functions of
//! the host) and [`variables`] (its configuration and secrets); and, through Spin's
//! interfaces while WASI has none, [`sql`] (SQLite and PostgreSQL) and [`redis`].
//!
//! ```ignore
//! #[wasmfn_sdk::event]
//! fn on_event(event: CloudEvent) -> Result<Option<CloudEvent>, Error> {
//!     let order: Order = event.json()?;
//!     Ok(Some(CloudEvent::new("order.accepted", "/orders").with_json(&order)?))
//! }
//! ```
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
//! On an `async fn`, the same attributes build a WASI 0.3 component instead: its instances
//! serve many requests at once, and what waits ([`p3::emit`], [`p3::outbound`]) is async;
//! see [`p3`].
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to name in `wasmfn.toml`.
#![deny(missing_docs)]

/// The name of a `wasi:http` `Method`, of either WASI version (their variants are named
/// alike).
macro_rules! method_name {
    ($method:expr, $M:ident) => {
        match $method {
            $M::Get => "GET".to_string(),
            $M::Head => "HEAD".to_string(),
            $M::Post => "POST".to_string(),
            $M::Put => "PUT".to_string(),
            $M::Delete => "DELETE".to_string(),
            $M::Connect => "CONNECT".to_string(),
            $M::Options => "OPTIONS".to_string(),
            $M::Trace => "TRACE".to_string(),
            $M::Patch => "PATCH".to_string(),
            $M::Other(m) => m,
        }
    };
}

/// The `wasi:http` `Method` of either WASI version for a method's name.
macro_rules! method_of {
    ($name:expr, $M:ident) => {
        match $name.to_ascii_uppercase().as_str() {
            "GET" => $M::Get,
            "HEAD" => $M::Head,
            "POST" => $M::Post,
            "PUT" => $M::Put,
            "DELETE" => $M::Delete,
            "PATCH" => $M::Patch,
            "OPTIONS" => $M::Options,
            "CONNECT" => $M::Connect,
            "TRACE" => $M::Trace,
            other => $M::Other(other.to_string()),
        }
    };
}

mod error;
pub(crate) mod event;
pub mod kv;
pub mod outbound;
pub mod p3;
pub mod redis;
mod request;
mod response;
mod router;
pub mod sql;
pub mod variables;

pub use error::Error;
pub use event::{CloudEvent, IntoEventResult, emit};
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use router::Router;

/// Exports a function as this component's HTTP handler.
///
/// The function takes a [`Request`] and returns anything that implements [`IntoResponse`]
/// (a [`Response`], a `String`, [`Json`], or a `Result` of those with [`Error`]). An
/// `async fn` is a WASI 0.3 handler (`wasi:http/handler@0.3`); it may also take a
/// [`p3::StreamingRequest`] and return a [`p3::StreamingResponse`].
pub use wasmfn_sdk_macro::http;

/// Exports a function as this component's CloudEvents handler
/// (`wasmfn:function/event-handler`).
///
/// The function takes a [`CloudEvent`] and returns its reply: a
/// `Result<Option<CloudEvent>, Error>` (or `Result<CloudEvent, Error>`, `Result<(), Error>`,
/// `Option<CloudEvent>`, `CloudEvent`, `()`). An [`Error`] with a retryable status (404, 408,
/// 409, 429, 5xx) makes the broker redeliver the event; any other status rejects it. An
/// `async fn` is a WASI 0.3 handler (`wasmfn:function/event-handler@0.2.0`).
pub use wasmfn_sdk_macro::event;

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

    /// Spin's database interfaces, for [`crate::sql`] and [`crate::redis`].
    pub mod databases {
        wit_bindgen::generate!({
            path: "../wit",
            world: "wasmfn:function/databases",
            generate_all,
        });
    }

    /// The event world, sharing the HTTP world's types and imports.
    pub mod events {
        wit_bindgen::generate!({
            path: "../wit",
            world: "wasmfn:function/event-function",
            pub_export_macro: true,
            default_bindings_module: "::wasmfn_sdk::wit::events",
            with: {
                "wasmfn:function/types@0.1.0": crate::wit::wasmfn::function::types,
                "wasmfn:function/emitter@0.1.0": crate::wit::wasmfn::function::emitter,
                "wasi:config/store@0.2.0-rc.1": crate::wit::wasi::config::store,
                "wasi:keyvalue/store@0.2.0-draft": crate::wit::wasi::keyvalue::store,
                "wasi:keyvalue/atomics@0.2.0-draft": crate::wit::wasi::keyvalue::atomics,
                "wasi:keyvalue/batch@0.2.0-draft": crate::wit::wasi::keyvalue::batch,
                "wasi:http/types@0.2.12": crate::wit::wasi::http::types,
                "wasi:http/outgoing-handler@0.2.12": crate::wit::wasi::http::outgoing_handler,
                "wasi:io/error@0.2.12": crate::wit::wasi::io::error,
                "wasi:io/poll@0.2.12": crate::wit::wasi::io::poll,
                "wasi:io/streams@0.2.12": crate::wit::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": crate::wit::wasi::clocks::monotonic_clock,
            },
        });
    }
}

#[doc(hidden)]
pub mod __private;
