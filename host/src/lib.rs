//! wasmfn: a WebAssembly function platform for Knative.
//!
//! One host process loads many components from a manifest and serves each HTTP request
//! and CloudEvent from a fresh instance. Modules:
//! - [`manifest`]: `wasmfn.toml`, parsed and validated;
//! - [`router`]: path → function;
//! - [`engine`]: everything wasmtime (the only module that names it);
//! - [`events`]: the CloudEvents HTTP binding, subscriptions and emitted events;
//! - [`functions`]: which of a manifest's functions are loaded (an LRU), loading on demand;
//! - [`server`]: routing, request ids, admission and status codes;
//! - [`listener`]: the HTTP/1.1 + h2c listener: connection limits, timeouts, draining;
//! - [`admission`]: the bounded slots behind every 503;
//! - [`deploy`]: the Knative objects `wasmfn deploy render` prints;
//! - [`metrics`]: the Prometheus metrics at `/.well-known/wasmfn/metrics`;
//! - [`logging`]: JSON or text log lines, written off the request path;
//! - [`telemetry`]: spans exported over OTLP when configured;
//! - [`cli`]: the `wasmfn` command line.
#![deny(missing_docs)]

pub mod admission;
pub mod cli;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod functions;
#[doc(hidden)]
pub mod fuzzing;
pub mod listener;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod router;
pub mod server;
pub mod telemetry;
