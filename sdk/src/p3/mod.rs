//! Handlers on WASI 0.3: `async fn`s, whose component exports the standard
//! `wasi:http/handler@0.3` (HTTP) or `wasmfn:function/event-handler@0.2.0` (events).
//!
//! wasmfn runs a WASI 0.3 component's instance for many requests, several at once: while
//! one handler awaits an outbound call or an emit, the instance serves the others. Each
//! request keeps its own context all the same: the events it emits carry its trace, its
//! calls to `*.wasmfn.internal` count its hops, its outbound calls carry its
//! `traceparent`, and what it prints is logged under its id.
//!
//! The attributes are the same as for WASI 0.2, on an `async fn`:
//!
//! ```ignore
//! use wasmfn_sdk::{CloudEvent, Error, Request, Router};
//!
//! #[wasmfn_sdk::http]
//! async fn handle(req: Request) -> Result<String, Error> {
//!     let rates = wasmfn_sdk::p3::outbound::get("https://api.example.com/rates").await?;
//!     Ok(rates.body_text()?.to_string())
//! }
//!
//! #[wasmfn_sdk::event]
//! async fn on_event(event: CloudEvent) -> Result<Option<CloudEvent>, Error> {
//!     wasmfn_sdk::p3::emit(CloudEvent::new("order.seen", "/orders")).await?;
//!     Ok(None)
//! }
//! ```
//!
//! The request, response, router, JSON and event types are the crate's own. What differs
//! is how a handler waits: [`emit`], [`outbound`] and [`kv`] are async here. Counters
//! ([`crate::kv::Store::increment`]), variables ([`crate::variables`]), SQL
//! ([`crate::sql`]) and Redis ([`crate::redis`]) are the crate's synchronous modules: WASI
//! has no 0.3 version of `wasi:keyvalue` or `wasi:config` yet, and each call is short, but
//! while it runs the instance's other requests wait.

mod http;
pub mod kv;
pub mod outbound;

pub use http::{
    Body, BodyWriter, FromWasiRequest, IntoWasiResponse, StreamingRequest, StreamingResponse,
};

use crate::{CloudEvent, Error};

/// Waits `duration` without holding up the instance's other requests.
pub async fn sleep(duration: std::time::Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    wasip3::clocks::monotonic_clock::wait_for(nanos).await;
}

/// Runs `task` alongside the handler, in the same instance: e.g. writing a
/// [`StreamingResponse`]'s body after the response is returned.
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    wasip3::spawn_local(task);
}

/// Sends `event` to the function's sink (or this host's subscribers), with the trace of
/// the request or event being handled. Waiting for it lets the instance serve others.
///
/// A failure is retryable ([`Error::retry`]): in an event handler, `?` makes the broker
/// redeliver the event that caused it.
pub async fn emit(event: CloudEvent) -> Result<(), Error> {
    wit::wasmfn::function::emitter::emit(event.into())
        .await
        .map_err(|reason| Error::retry(format!("emitting the event failed: {reason}")))
}

/// Bindings generated from `wit/p3` by wit-bindgen; the macros use them, handlers need not.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/p3",
        world: "wasmfn:function/async-http-function@0.2.0",
        pub_export_macro: true,
        default_bindings_module: "::wasmfn_sdk::p3::wit",
        with: {
            // The same records as WASI 0.2's: one set of conversions serves both.
            "wasmfn:function/types@0.2.0": crate::wit::wasmfn::function::types,
        },
        generate_all,
    });

    /// Spin's async key-value interface, for [`crate::p3::kv`].
    pub mod kv {
        wit_bindgen::generate!({
            path: "../wit/p3",
            world: "wasmfn:function/async-key-value@0.2.0",
            generate_all,
        });
    }

    /// The event world, sharing the HTTP world's types and imports.
    pub mod events {
        wit_bindgen::generate!({
            path: "../wit/p3",
            world: "wasmfn:function/async-event-function@0.2.0",
            pub_export_macro: true,
            default_bindings_module: "::wasmfn_sdk::p3::wit::events",
            with: {
                "wasmfn:function/types@0.2.0": crate::wit::wasmfn::function::types,
                "wasmfn:function/emitter@0.2.0": crate::p3::wit::wasmfn::function::emitter,
            },
        });
    }
}

/// Used by the attributes' expansions.
#[doc(hidden)]
pub mod __private {
    pub use super::http::serve;
    pub use wasip3;

    use crate::IntoEventResult;
    use crate::wit::wasmfn::function::types::{CloudEvent, HandlerError};

    /// Runs an async event handler on one event; used by `#[wasmfn_sdk::event]`.
    pub async fn handle_event<F, Fut>(
        event: CloudEvent,
        handler: F,
    ) -> Result<Option<CloudEvent>, HandlerError>
    where
        F: FnOnce(crate::CloudEvent) -> Fut,
        Fut: Future<Output: crate::IntoEventResult>,
    {
        crate::event::into_handler_result(handler(event.into()).await.into_event_result())
    }
}
