//! What the tests and benches need to drive [`App::handle`] in process, written once: an
//! engine, an app from manifest text, and a request answered whole. Not part of the API.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::engine::{Engine, EngineOptions, RequestBody};
use crate::manifest::Manifest;
use crate::server::{App, HostOptions};

/// Where manifest text given to [`app`] pretends to live.
pub const VIRTUAL_MANIFEST: &str = "/virtual/wasmfn.toml";

/// An engine with `options`; panics with wasmtime's reason if it cannot be made.
pub fn engine(options: EngineOptions) -> Engine {
    Engine::new(&options).expect("creating the engine")
}

/// The app for manifest `text`, loaded on `engine`; panics with the reason if it cannot
/// load.
pub fn app(text: &str, engine: &Engine) -> Arc<App> {
    app_with(text, engine, HostOptions::default())
}

/// [`app`], set up as `options` says (stores' data directory, extra CA, sink).
pub fn app_with(text: &str, engine: &Engine, options: HostOptions) -> Arc<App> {
    let manifest = Manifest::parse(Path::new(VIRTUAL_MANIFEST), text)
        .unwrap_or_else(|e| panic!("the manifest is invalid: {e}"));
    App::load_with(&manifest, engine, options)
        .unwrap_or_else(|e| panic!("the app did not load: {e}"))
}

/// `request` answered by `app`, its body read whole (a body that fails part-way reads as
/// empty; a test of cut-off bodies reads the response itself).
pub async fn respond<B: RequestBody>(
    app: &App,
    request: http::Request<B>,
) -> http::Response<Bytes> {
    let (parts, body) = app.handle(request).await.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    http::Response::from_parts(parts, body)
}
