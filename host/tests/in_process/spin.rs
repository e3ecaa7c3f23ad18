//! Spin apps served unchanged from their own `spin.toml`: a component built with spin-sdk 7
//! (WASI 0.3) and nothing of wasmfn, its routes, grants and environment read from Spin's
//! manifest.

use std::path::Path;

use wasmfn::manifest::Manifest;
use wasmfn::server::App;
use wasmfn_guest_artifacts as guests;

use super::{call, engine};

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn spin_hello() {
    let path = Path::new(guests::GUESTS_DIR).join("examples/spin-hello/spin.toml");
    let manifest = Manifest::load(&path).unwrap();
    assert_eq!(
        manifest.functions[0].component.canonicalize().unwrap(),
        Path::new(guests::SPIN_HELLO),
        "its source, relative to spin.toml"
    );
    let app = App::load(&manifest, &engine(Some(&super::common::cache_dir()))).unwrap();
    let r = call(&app, "GET", "/hello", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from a Spin app\n")
    );
    // `/hello/...` is the path and everything below it.
    let r = call(&app, "GET", "/hello/env", "").await;
    assert_eq!(
        r.text(),
        "GREETING=hi from spin.toml PATH seen: false\n",
        "the component's environment, and none of the host's"
    );
    let r = call(&app, "GET", "/files/a/b.txt", "").await;
    assert_eq!(r.text(), "asked for /files/a/b.txt\n");
    // No trigger routes here: the host's own 404.
    let r = call(&app, "GET", "/elsewhere", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no function is routed at /elsewhere");
}
