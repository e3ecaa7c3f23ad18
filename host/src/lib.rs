//! wasmfn: a WebAssembly function platform for Knative.
//!
//! One host process loads many components from a manifest and serves each HTTP request
//! and CloudEvent: a WASI 0.2 component from a fresh instance (or a reused one, if its
//! function opts in), a WASI 0.3 component from instances that serve many requests at once.
//!
//! # A map for newcomers
//!
//! **An HTTP request** arrives at [`listener`] (accept, connection limits and timeouts,
//! drain), which calls [`server::App::handle`]. The server gives it an id, answers the
//! host's own paths, takes a slot of the host's in-flight limit ([`admission`]), routes the
//! path ([`router`]) and gets the function from [`functions`] (loading it on first use).
//! The function's [`engine::Function::handle`] runs it: `engine/invocation.rs` takes the
//! function's concurrency and an instance slot, makes a fresh store with the deadline (or
//! takes an idle instance, `engine/reuse.rs`), and the ABI file (`engine/wasi_http.rs` or,
//! for SDK guests with small bodies, `engine/http_handler.rs`) instantiates and calls the
//! guest. A WASI 0.3 function's request goes to `engine/wasi_http_p3.rs` instead, which
//! hands it to an instance with room for it. Any failure on the way is a
//! [`failure::Failure`], which knows its status; one exit in the server records
//! [`metrics`], writes the log line ([`logging`]) and sets `x-request-id`.
//!
//! **A CloudEvent** takes the same way to the server, which hands a request on the events
//! path to [`events::Dispatcher`]: [`cloudevent`] decodes it, [`events::filter`] picks
//! the subscribed functions, `engine/event_handler.rs` runs each, and the reply goes back
//! in the response. What a guest emits (`engine/emitter.rs`) goes back to the dispatcher,
//! which sends it to the sink ([`events::sink`]) or delivers it to this host's own
//! subscribers.
//!
//! **Start-up**: [`cli`] reads the [`manifest`] (its `deploy` part is rendered to Knative
//! objects by [`deploy`]), makes the [`engine::Engine`], loads the functions and starts the
//! listener. Spans are exported by [`telemetry`] when configured.
//!
//! # Modules, one line each
//! - [`manifest`]: `wasmfn.toml`, parsed and validated (functions, limits, deploy layout);
//! - [`router`]: path → function;
//! - [`engine`]: everything wasmtime (the only module that names it), one file per guest ABI;
//! - [`events`]: the CloudEvents binding, subscriptions, delivery and the sink;
//! - [`functions`]: which of a manifest's functions are loaded (an LRU), loading on demand;
//! - [`server`]: the HTTP front: request ids, routing, admission, the one exit;
//! - [`failure`]: every refusal and failure a client sees, with its status and headers;
//! - [`listener`]: the HTTP/1.1 + h2c listener: connection limits, timeouts, draining;
//! - [`live`]: the app a server serves, swapped on reload without dropping a request;
//! - [`admission`]: the bounded slots behind every 503;
//! - [`deploy`]: the Knative objects `wasmfn deploy render` prints;
//! - [`metrics`]: the Prometheus metrics at `/.well-known/wasmfn/metrics`;
//! - [`logging`]: JSON or text log lines, written off the request path;
//! - [`telemetry`]: trace contexts, and spans exported over OTLP when configured;
//! - [`cli`]: the `wasmfn` command line.
#![deny(missing_docs)]

pub mod admin;
pub mod admission;
pub mod capabilities;
pub mod cli;
pub mod cloudevent;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod failure;
pub mod functions;
#[doc(hidden)]
pub mod fuzzing;
pub mod keyvalue;
pub mod listener;
pub mod live;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod outbound;
pub mod server;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod traffic;
