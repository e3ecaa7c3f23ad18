//! In-process tests: the engine and `App::handle` against real guest components built from
//! guests/, without sockets, by topic: plain HTTP requests ([`requests`]), guests that fail or
//! probe their sandbox ([`containment`]), loading and the compile cache ([`loading`]),
//! CloudEvents ([`events`]), and what functions can use: key-value stores, config and
//! outbound HTTP ([`capabilities`]), and Spin apps from their `spin.toml` ([`spin`]). Every guest has a test named after it.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use wasmfn::engine::{CacheDir, Engine, EngineOptions};
use wasmfn::server::App;
use wasmfn::testing;

#[path = "../common/mod.rs"]
mod common;
use common::Reply;

mod apps;
mod capabilities;
mod containment;
mod events;
mod loading;
mod requests;
mod reuse;
mod spin;
mod versions;
mod wasi_p3;

use apps::*;
use capabilities::*;
use containment::*;
use events::*;
use requests::*;
use reuse::*;
use spin::*;
use versions::*;
use wasi_p3::*;

// A guest without a test here fails the build.
macro_rules! assert_guest_is_tested {
    ($name:ident, $path:expr) => {
        const _: fn() = $name;
    };
}
wasmfn_guest_artifacts::foreach_guest!(assert_guest_is_tested);

fn engine(cache: Option<&Path>) -> Engine {
    testing::engine(EngineOptions {
        pool_instances: 32,
        cache: cache.map(|c| CacheDir::new(c).unwrap()),
        ..EngineOptions::default()
    })
}

/// Why the app for manifest text `manifest` does not load, on an engine caching in `cache`.
fn refused(manifest: &str, cache: Option<&Path>) -> String {
    let manifest =
        wasmfn::manifest::Manifest::parse(Path::new(testing::VIRTUAL_MANIFEST), manifest)
            .unwrap_or_else(|e| panic!("the manifest is invalid: {e}"));
    match App::load(&manifest, &engine(cache)) {
        Ok(_) => panic!("the app loaded; it must be refused"),
        Err(e) => e.to_string(),
    }
}

fn app(manifest: &str) -> Arc<App> {
    testing::app(manifest, &engine(Some(&common::cache_dir())))
}

/// [`app`] with room for a chain of [`wasmfn::engine::HOP_LIMIT`] in-process hops, every
/// instance of which is live at once while the next runs.
fn deep_app(manifest: &str) -> Arc<App> {
    let engine = testing::engine(EngineOptions {
        pool_instances: 4 * wasmfn::engine::HOP_LIMIT,
        cache: Some(CacheDir::new(common::cache_dir()).unwrap()),
        ..EngineOptions::default()
    });
    testing::app(manifest, &engine)
}

async fn call(app: &App, method: &str, uri: impl AsRef<str>, body: impl Into<Bytes>) -> Reply {
    let octets = [("content-type", "application/octet-stream")];
    call_with(app, method, uri.as_ref(), &octets, body).await
}

async fn call_with(
    app: &App,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "example.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    testing::respond(app, request).await.into()
}

/// A POST of `body` as `content_type`.
async fn post_as(app: &App, uri: &str, content_type: &str, body: impl Into<Bytes>) -> Reply {
    call_with(app, "POST", uri, &[("content-type", content_type)], body).await
}

fn entry(name: &str, component: &str, routes: &[&str], extra: &str) -> String {
    common::function(name, component, routes, extra)
}
