//! wasmfn: a WebAssembly function platform for Knative.
//!
//! One host process loads many components from a manifest and serves each HTTP request
//! and CloudEvent: a WASI 0.2 component from a fresh instance (or a reused one, if its
//! function opts in), a WASI 0.3 component from instances that serve many requests at once.
//! `ARCHITECTURE.md` at the repository root draws the layers and says where to change what.
//!
//! # Layers
//! Dependencies run one way, down this list; a module imports only those below it.
//! 1. Leaves: [`cloudevent`] (the CloudEvents HTTP binding), [`admission`], [`metrics`],
//!    [`logging`], [`telemetry`].
//! 2. [`manifest`]: configuration, parsed and checked (routes, subscriptions, allowed
//!    hosts and the deploy layout live here too); it imports nothing that runs.
//! 3. [`engine`]: everything wasmtime, one file per guest ABI; it reaches the rest of the
//!    host only through the traits in `engine::context` ([`engine::Emit`],
//!    [`engine::CallFunction`]), never by importing events or functions. Beside it, what
//!    it is handed: [`keyvalue`], [`databases`], [`outbound`], [`capabilities`].
//! 4. [`functions`]: which functions are loaded, and [`functions::Functions::invoke`], the
//!    one way any function runs; [`traffic`] picks the version.
//! 5. [`events`] (delivery, the sink, schedules) and [`failure`] (what clients see).
//! 6. [`server`]: the HTTP front; [`live`], the app swapped on reload; [`admin`].
//! 7. [`listener`]: sockets, connection limits, drain.
//! 8. [`cli`]: the `wasmfn` command line; [`knative`] renders `wasmfn deploy render`.
//!
//! # A request's way through
//! **An HTTP request** arrives at [`listener`], which calls [`server::App::handle`]. The
//! server gives it an id, answers the host's own paths, takes a slot of the host's
//! in-flight limit ([`admission`]), routes the path ([`manifest::routes`]) and hands it to
//! [`functions::Functions::invoke`]: choose the version, load it on first use, run it,
//! name the failure. The function's [`engine::Function::handle`] picks the guest ABI
//! (an `HttpExecutor` per ABI file): `engine/invocation.rs` takes the function's
//! concurrency and an instance slot and makes a store with the deadline (or takes an idle
//! instance, `engine/reuse.rs`); `engine/wasi_http.rs`, `engine/http_handler.rs` (the
//! one-call path for SDK guests) or `engine/wasi_http_p3.rs` (WASI 0.3 instances serving
//! many) calls the guest. Any failure on the way is a [`failure::Failure`], which knows
//! its status; one exit in the server records [`metrics`], writes the log line
//! ([`logging`]) and sets `x-request-id`.
//!
//! **A CloudEvent** takes the same way to the server, which hands a request on the events
//! path to [`events::Dispatcher`]: [`cloudevent`] decodes it, each function's
//! [`manifest::subscription`]s pick the recipients, and each runs through the same
//! [`functions::Functions::invoke`] (`engine/event_handler.rs`); the reply goes back in
//! the response. What a guest emits (`engine/emitter.rs`) goes to the dispatcher through
//! [`engine::Emit`], which sends it to the sink ([`events::sink`]) or delivers it to this
//! host's own subscribers.
//!
//! **Start-up**: [`cli`] reads the [`manifest`], makes the [`engine::Engine`], opens the
//! [`capabilities`], loads the functions and starts the listener. Spans are exported by
//! [`telemetry`] when configured.
//!
//! # Modules, one line each
//! - [`admin`]: the loopback admin listener: weights, reload, metrics;
//! - [`admission`]: the bounded slots behind every 503;
//! - [`capabilities`]: the stores and the outbound client, opened once, granted per function;
//! - [`cli`]: the `wasmfn` command line;
//! - [`cloudevent`]: the CloudEvents HTTP binding (binary, structured, batched) and its rules;
//! - [`databases`]: SQLite databases and Redis connections for guests (Spin's interfaces);
//! - [`engine`]: everything wasmtime (the only module that names it), one file per guest ABI;
//! - [`events`]: delivering events to functions, the sink, schedules fired from the host;
//! - [`failure`]: every refusal and failure a client sees, with its status and headers;
//! - [`functions`]: which of a manifest's functions are loaded (an LRU), and running one;
//! - [`keyvalue`]: the key-value stores (embedded SQLite, Redis, memory);
//! - [`knative`]: the Knative objects `wasmfn deploy render` prints;
//! - [`listener`]: the HTTP/1.1 + h2c listener: connection limits, timeouts, draining;
//! - [`live`]: the app a server serves, swapped on reload without dropping a request;
//! - [`logging`]: JSON or text log lines, written off the request path;
//! - [`manifest`]: `wasmfn.toml`, parsed and validated;
//! - [`metrics`]: the Prometheus metrics at `/.well-known/wasmfn/metrics`;
//! - [`outbound`]: the one HTTP client guests' outbound calls go through;
//! - [`server`]: the HTTP front: request ids, routing, admission, the one exit;
//! - [`telemetry`]: trace contexts and request ids, and spans exported over OTLP;
//! - [`traffic`]: which version of a function answers a request.
#![deny(missing_docs)]

pub mod admin;
pub mod admission;
pub mod capabilities;
pub mod cli;
pub mod cloudevent;
pub mod databases;
pub mod engine;
pub mod events;
pub mod failure;
pub mod functions;
#[doc(hidden)]
pub mod fuzzing;
pub mod keyvalue;
pub mod knative;
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
