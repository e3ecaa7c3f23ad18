//! Spin apps served unchanged from their own `spin.toml`: a component built with spin-sdk 7
//! (WASI 0.3) and nothing of wasmfn, its routes, grants, variables and environment read
//! from Spin's manifest, its key-value store and variables through Spin's interfaces.

use std::path::Path;
use std::sync::Arc;

use wasmfn::capabilities::CapabilityOptions;
use wasmfn::manifest::Manifest;
use wasmfn::server::{App, HostOptions};
use wasmfn_guest_artifacts as guests;

use super::{call, engine, entry};

/// The example app `name`, from its spin.toml, keeping its stores in `data`.
fn spin_app(name: &str, data: &Path) -> Arc<App> {
    let path = Path::new(guests::GUESTS_DIR).join(format!("examples/{name}/spin.toml"));
    let manifest = Manifest::load(&path).unwrap();
    let options = HostOptions {
        capabilities: CapabilityOptions {
            data_dir: Some(data.to_path_buf()),
            ..CapabilityOptions::default()
        },
        ..HostOptions::default()
    };
    App::load_with(
        &manifest,
        &engine(Some(&super::common::cache_dir())),
        options,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn spin_hello() {
    let data = tempfile::tempdir().unwrap();
    let app = spin_app("spin-hello", data.path());
    assert_eq!(
        app.functions().spec(0).component.canonicalize().unwrap(),
        Path::new(guests::SPIN_HELLO),
        "its source, relative to spin.toml"
    );
    // The component variable, a template over the application variable's default.
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
    // Its `files`, read-only: `static/` at `/files` less what `exclude_files` takes out,
    // and the `notes/*.txt` glob at the same relative path.
    let r = call(&app, "GET", "/files/hello.txt", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello from a file\n"));
    let r = call(&app, "GET", "/files/private/key.txt", "").await;
    assert_eq!(r.status, 404, "excluded: {}", r.text());
    let r = call(&app, "GET", "/files/?list=/notes", "").await;
    assert_eq!(r.text(), "one.txt\n", "the glob took only the .txt");
    let r = call(&app, "GET", "/files/?list=/", "").await;
    assert_eq!(r.text(), "files,notes\n", "nothing else of the host");
    // No trigger routes here: the host's own 404.
    let r = call(&app, "GET", "/elsewhere", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no function is routed at /elsewhere");

    // Spin's key-value interface, on the embedded `default` store.
    for n in 1..=3 {
        let r = call(&app, "GET", "/hello/count", "").await;
        assert_eq!(r.text(), format!("visit {n}\n"), "{}", r.status);
    }
    assert_eq!(
        call(&app, "GET", "/hello/keys", "").await.text(),
        "visits\n"
    );
    // Kept: a new host on the same data reads it.
    drop(app);
    let app = spin_app("spin-hello", data.path());
    assert_eq!(
        call(&app, "GET", "/hello/count", "").await.text(),
        "visit 4\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spin_guest_and_a_wasi_keyvalue_guest_share_a_store_by_its_label() {
    // The Spin app beside a wasi:keyvalue component, both granted `default`.
    let manifest = format!(
        "[key_value.default]\ntype = \"memory\"\n\n{}{}",
        entry(
            "spin",
            guests::SPIN_HELLO,
            &["/hello/*"],
            "key_value_stores = [\"default\"]\nvariables = { greeting = \"Hi\" }"
        ),
        entry(
            "raw",
            guests::RAW_CAPABILITIES,
            &["/raw-caps/*"],
            "key_value_stores = [\"default\"]"
        ) + &entry("echo", guests::ECHO, &["/echo"], ""),
    );
    let app = super::app(&manifest);
    assert_eq!(
        call(&app, "GET", "/hello", "").await.text(),
        "Hi from a Spin app\n"
    );
    call(&app, "GET", "/hello/count", "").await;
    call(&app, "GET", "/hello/count", "").await;
    let r = call(&app, "POST", "/raw-caps/kv/default/get", "visits").await;
    assert_eq!(r.text(), "value: 2", "what the Spin guest wrote");
    call(&app, "POST", "/raw-caps/kv/default/set?value=41", "visits").await;
    assert_eq!(
        call(&app, "GET", "/hello/count", "").await.text(),
        "visit 42\n",
        "what the wasi:keyvalue guest wrote"
    );
    // Spin's request headers are for components from a spin.toml only.
    let r = call(&app, "GET", "/echo", "").await;
    assert_eq!(r.header("x-echo-header-host"), Some("example.test"));
    assert_eq!(r.header("x-echo-header-spin-full-url"), None);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn spin_sdk5_counter() {
    // The Spin 3 line: spin-sdk 5.2 on WASI 0.2, its Router and its 2.0 interfaces.
    let data = tempfile::tempdir().unwrap();
    let app = spin_app("spin-sdk5-counter", data.path());
    let r = call(&app, "GET", "/counter", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from spin-sdk 5\n")
    );
    // The same variable through the wasi:config draft spin-sdk 5.2 binds.
    let r = call(&app, "GET", "/counter/config/greeting", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello\n"));
    let r = call(&app, "GET", "/counter/config/nope", "").await;
    assert_eq!(r.status, 404);
    for n in 1..=2 {
        let r = call(&app, "GET", "/counter/apples", "").await;
        assert_eq!(r.text(), format!("apples {n}\n"), "{}", r.status);
    }
    call(&app, "GET", "/counter/pears", "").await;
    let r = call(&app, "GET", "/counter/keys/all", "").await;
    assert_eq!(r.text(), "apples,pears\n");
    // A trigger route with a parameter, and the header Spin sets for it.
    let r = call(&app, "GET", "/greet/ada", "").await;
    assert_eq!(
        r.text(),
        "hello ada (spin-path-match-name: ada, route /greet/:name)\n"
    );
    assert_eq!(call(&app, "GET", "/greet/ada/x", "").await.status, 404);
    // The headers Spin gives a component, which its SDK's routers and apps read.
    let r = call(&app, "GET", "/counter/route/info?x=1", "").await;
    assert_eq!(
        r.text(),
        "spin-full-url: http://example.test/counter/route/info?x=1\n\
         spin-path-info: /route/info\n\
         spin-matched-route: /counter/...\n\
         spin-component-route: /counter\n\
         spin-raw-component-route: /counter/...\n\
         spin-base-path: /\n\
         spin-path-match-shelf: (none)\n"
    );
    // Parameters, then a wildcard: the path info is what follows the parameters.
    let r = call(&app, "GET", "/shelves/top/books/1", "").await;
    assert_eq!(
        r.text(),
        "spin-full-url: http://example.test/shelves/top/books/1\n\
         spin-path-info: /books/1\n\
         spin-matched-route: /shelves/:shelf/...\n\
         spin-component-route: /shelves/:shelf\n\
         spin-raw-component-route: /shelves/:shelf/...\n\
         spin-base-path: /\n\
         spin-path-match-shelf: top\n"
    );
    drop(app);
    let app = spin_app("spin-sdk5-counter", data.path());
    let r = call(&app, "GET", "/counter/apples", "").await;
    assert_eq!(r.text(), "apples 3\n", "kept across a restart");
}
