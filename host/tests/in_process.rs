//! In-process tests: the engine and `App::handle` against real guest components built from
//! guests/, without sockets. Every guest has a test named after it here.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn::engine::{CacheDir, Engine, EngineOptions, InvokeError, LoadError};
use wasmfn::manifest::Manifest;
use wasmfn::server::App;
use wasmfn_guest_artifacts as guests;

mod common;
use common::Reply;

// A guest without a test here fails the build.
macro_rules! assert_guest_is_tested {
    ($name:ident, $path:expr) => {
        const _: fn() = $name;
    };
}
wasmfn_guest_artifacts::foreach_guest!(assert_guest_is_tested);

fn engine(cache: Option<&Path>) -> Engine {
    Engine::new(&EngineOptions {
        pool_instances: 32,
        cache: cache.map(|c| CacheDir::new(c).unwrap()),
        ..EngineOptions::default()
    })
    .unwrap()
}

fn app(manifest: &str) -> std::sync::Arc<App> {
    let manifest = Manifest::parse(Path::new("/virtual/wasmfn.toml"), manifest).unwrap();
    App::load(&manifest, &engine(Some(&common::cache_dir()))).unwrap()
}

async fn call(app: &App, method: &str, uri: &str, body: impl Into<Bytes>) -> Reply {
    call_with(
        app,
        method,
        uri,
        &[("content-type", "application/octet-stream")],
        body,
    )
    .await
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
    let response = app.handle(request).await;
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn entry(name: &str, component: &str, routes: &[&str], extra: &str) -> String {
    common::function(name, component, routes, extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn hello() {
    let app = app(&entry(
        "hello",
        guests::HELLO,
        &["/hello"],
        "variables = { greeting = \"Howdy\" }",
    ));
    let r = call(&app, "GET", "/hello?name=Ada", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Howdy, Ada!\n"));
    // Every response carries a request id, and each request gets a new one.
    let a = r.headers["x-request-id"].clone();
    let b = call(&app, "GET", "/hello", "").await.headers["x-request-id"].clone();
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo() {
    let app = app(&entry("echo", guests::ECHO, &["/echo/*"], ""));
    let body: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    let r = call(&app, "PUT", "/echo/a/b?x=1", body.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "1 MiB body came back altered");
    assert_eq!(r.headers["x-echo-method"], "PUT");
    assert_eq!(r.headers["x-echo-path"], "/echo/a/b");
    assert_eq!(r.headers["x-echo-query"], "x=1");
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    // The guest saw the request id the host assigned.
    assert_eq!(
        r.headers["x-echo-header-x-request-id"],
        r.headers["x-request-id"]
    );
}

/// A body that does not announce its length (like a chunked upload), in two chunks: the
/// host cannot take the one-call path for it.
struct Chunked(Vec<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| Ok(hyper::body::Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

/// An SDK function exports both `wasi:http/incoming-handler` and the one-call
/// `http-handler`; the host picks by whether the body's length is known. Both must answer
/// the same, including when the guest fails.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_functions_answer_alike_through_the_one_call_path_and_wasi_http() {
    let app = app(&(entry("echo", guests::ECHO, &["/echo/*"], "")
        + &entry("trap", guests::TEST_TRAP, &["/trap"], "")));
    let body = Bytes::from_static(b"first half, second half");
    let (a, b) = body.split_at(11);
    let streamed = |uri: &str| {
        http::Request::post(uri)
            .header("host", "example.test")
            .header("content-type", "text/plain")
            .body(Chunked(vec![
                Bytes::copy_from_slice(a),
                Bytes::copy_from_slice(b),
            ]))
            .unwrap()
    };
    let whole = call_with(
        &app,
        "POST",
        "/echo/x?y=1",
        &[("content-type", "text/plain")],
        body.clone(),
    )
    .await;
    let response = app.handle(streamed("/echo/x?y=1")).await;
    let (parts, streamed_body) = response.into_parts();
    let streamed_body = streamed_body.collect().await.unwrap().to_bytes();
    assert_eq!((whole.status, parts.status.as_u16()), (200, 200));
    assert_eq!((&whole.body, &streamed_body), (&body, &body));
    for h in [
        "x-echo-method",
        "x-echo-path",
        "x-echo-query",
        "content-type",
    ] {
        assert_eq!(whole.headers[h], parts.headers[h], "{h}");
    }

    let trapped = app.handle(streamed("/trap")).await;
    assert_eq!(trapped.status(), 500);
    assert_eq!(call(&app, "GET", "/trap", "").await.status, 500);
}

/// With more functions than `[server] loaded_functions`, the rest load on their first
/// request and the least recently used are unloaded; every one keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn functions_past_the_loaded_limit_load_on_first_request_and_are_unloaded_lru() {
    let mut text = "[server]\nloaded_functions = 2\n\n".to_string();
    for i in 0..5 {
        text += &entry(
            &format!("f{i}"),
            guests::HELLO,
            &[&format!("/f{i}")],
            "variables = { greeting = \"Hi\" }",
        );
    }
    let many = app(&text);
    assert_eq!(many.functions().len(), 5);
    assert_eq!(
        many.functions().loaded(),
        2,
        "the first two are loaded at start"
    );
    for round in 0..2 {
        for i in (0..5).rev() {
            let r = call(&many, "GET", &format!("/f{i}?name={round}"), "").await;
            assert_eq!((r.status, r.text()), (200, format!("Hi, {round}!\n")));
            assert!(
                many.functions().loaded() <= 2,
                "never more than the limit loaded"
            );
        }
    }
    // Ten first requests at once to a function that is not loaded: all answered.
    let calls = (0..10).map(|_| call(&many, "GET", "/f4", ""));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200);
    }

    // A component that turns out broken when first needed is a 500 naming the request.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm").unwrap();
    let text = "[server]\nloaded_functions = 1\n\n".to_string()
        + &entry("ok", guests::HELLO, &["/ok"], "")
        + &entry("broken", broken.to_str().unwrap(), &["/broken"], "");
    let partly_broken = app(&text);
    let r = call(&partly_broken, "GET", "/broken", "").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["function"], "broken");
    assert_eq!(call(&partly_broken, "GET", "/ok", "").await.status, 200);
    // A component path that does not exist fails the start even past the limit.
    let text = "[server]\nloaded_functions = 1\n\n".to_string()
        + &entry("ok", guests::HELLO, &["/ok"], "")
        + &entry("missing", "/nonexistent/missing.wasm", &["/m"], "");
    let manifest = Manifest::parse(Path::new("/virtual/wasmfn.toml"), &text).unwrap();
    let err = App::load(&manifest, &engine(None))
        .err()
        .expect("start fails")
        .to_string();
    assert!(
        err.contains("missing") && err.contains("/nonexistent/missing.wasm"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn core_model_api() {
    let app = app(&entry(
        "core-model-api",
        guests::CORE_MODEL_API,
        &["/api/v1/*", "/health/*"],
        "variables = { model_version = \"t1\" }",
    ));
    assert_eq!(
        call(&app, "GET", "/health/live", "").await.json()["status"],
        "alive"
    );
    assert_eq!(
        call(&app, "GET", "/health/ready", "").await.json()["status"],
        "ready"
    );
    let r = call(
        &app,
        "POST",
        "/api/v1/models/mortgage",
        r#"{"principal":300000,"annual_rate_percent":6,"years":30}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["monthly_payment"], 1798.65);
    assert_eq!(r.json()["payments"], 360);
    let r = call(
        &app,
        "POST",
        "/api/v1/models/valuation",
        r#"{"sqft":1500,"bedrooms":3,"bathrooms":2,"year_built":2025}"#,
    )
    .await;
    assert_eq!(
        r.json()["estimate"],
        1500.0 * 210.0 + 3.0 * 9500.0 + 2.0 * 12000.0
    );
    assert_eq!(r.json()["model"], "valuation-t1");
    let r = call(
        &app,
        "POST",
        "/api/v1/models/rental-yield",
        r#"{"price":200000,"monthly_rent":1000,"annual_costs":2000}"#,
    )
    .await;
    assert_eq!(
        (
            r.json()["gross_yield_percent"].as_f64(),
            r.json()["net_yield_percent"].as_f64()
        ),
        (Some(6.0), Some(5.0))
    );
    // Bad input is the client's fault, and the guest says what was wrong.
    let r = call(
        &app,
        "POST",
        "/api/v1/models/mortgage",
        r#"{"principal":1,"years":30}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("annual_rate_percent"),
        "{}",
        r.text()
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/models/mortgage", "")
            .await
            .status,
        405
    );
    assert_eq!(call(&app, "GET", "/api/v1/nothing", "").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_wasi_http() {
    // A component written against the plain `wasip2` crate runs unchanged, from .wasm ...
    let app = app(&entry("raw", guests::RAW_WASI_HTTP, &["/raw/*"], ""));
    let r = call(&app, "GET", "/raw/x?y", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "raw wasi:http component saw /raw/x?y\n")
    );

    // ... and from a .cwasm precompiled by `Engine::precompile`, memory-mapped at load.
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("raw.cwasm");
    std::fs::write(
        &cwasm,
        engine(None)
            .precompile(Path::new(guests::RAW_WASI_HTTP))
            .unwrap(),
    )
    .unwrap();
    let app = self::app(&entry("raw", cwasm.to_str().unwrap(), &["/raw/*"], ""));
    assert_eq!(
        call(&app, "GET", "/raw/z", "").await.text(),
        "raw wasi:http component saw /raw/z\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_trap() {
    let app = app(&(entry("trap", guests::TEST_TRAP, &["/trap"], "")
        + &entry("hello", guests::HELLO, &["/hello"], "")));
    for _ in 0..3 {
        let r = call(&app, "GET", "/trap", "").await;
        assert_eq!(r.status, 500);
        let id = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(r.json()["request_id"], id.as_str());
        assert_eq!(r.json()["function"], "trap");
        assert_eq!(
            call(&app, "GET", "/hello", "").await.status,
            200,
            "served normally after a trap"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_spin() {
    let app = app(
        &(entry("spin", guests::TEST_SPIN, &["/spin"], "timeout = \"200ms\"")
            + &entry("hello", guests::HELLO, &["/hello"], "")),
    );
    // The guest never yields to the host, so only the epoch deadline can stop it.
    let (spun, hello) = tokio::join!(call(&app, "GET", "/spin", ""), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        call(&app, "GET", "/hello", "").await
    });
    assert_eq!(spun.status, 504, "{}", spun.text());
    assert!(
        spun.json()["error"].as_str().unwrap().contains("200ms"),
        "{}",
        spun.text()
    );
    assert_eq!(
        hello.status, 200,
        "other functions keep serving while one spins"
    );
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_oom() {
    let app = app(
        &(entry("oom", guests::TEST_OOM, &["/oom"], "memory = \"8MiB\"")
            + &entry("hello", guests::HELLO, &["/hello"], "")),
    );
    let r = call(&app, "GET", "/oom", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_late_trap() {
    let app = app(&(entry("late", guests::TEST_LATE_TRAP, &["/late"], "")
        + &entry("hello", guests::HELLO, &["/hello"], "")));
    let request = http::Request::get("/late")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.handle(request).await;
    // The head went out before the trap, so the status is the guest's ...
    assert_eq!(response.status(), 200);
    // ... and the body is cut off: an error, or fewer than the 1000 bytes it announced
    // (over a socket hyper then closes the connection, see cli.rs).
    if let Ok(body) = response.into_body().collect().await {
        assert!(
            body.to_bytes().len() < 1000,
            "a cut-off body must not look complete"
        );
    }
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_probe() {
    // Everything the guest tries is real and reachable from the host: a file the host
    // can read, a listening TCP socket, an HTTP port. The host process also has an
    // environment (PATH at least). The guest must reach none of it.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"host-only").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    web.set_nonblocking(true).unwrap();
    assert!(
        std::env::vars().next().is_some(),
        "the host has an environment"
    );

    let app = app(&entry("probe", guests::TEST_PROBE, &["/probe/*"], ""));
    let uri = format!(
        "/probe/sandbox?file={}&connect={}&url=http://{}/x",
        secret.display(),
        tcp.local_addr().unwrap(),
        web.local_addr().unwrap()
    );
    let r = call(&app, "GET", &uri, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    for attempt in [
        "env",
        "args",
        "read_file",
        "list_root",
        "list_cwd",
        "write_tmp",
        "tcp_connect",
        "udp_bind",
        "dns",
        "http",
    ] {
        assert_eq!(
            report[attempt]["allowed"], false,
            "{attempt} must be denied: {report:#}"
        );
    }
    assert!(
        report["http"]["detail"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "outbound HTTP is refused by policy, not by chance: {report:#}"
    );
    for (what, listener) in [("TCP", &tcp), ("HTTP", &web)] {
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "the guest reached the host's {what} listener"
        );
    }
    assert!(!r.text().contains("host-only"));

    // An idle guest waits on the host's clock without holding anything up.
    let r = call(&app, "GET", "/probe/sleep?ms=20", "").await;
    assert_eq!(r.text(), "slept 20 ms\n");
    let r = call(&app, "GET", "/probe/print?bytes=10", "").await;
    assert_eq!(r.text(), "printed 10 bytes\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_not_http() {
    let manifest = Manifest::parse(
        Path::new("/virtual/wasmfn.toml"),
        &entry("calc", guests::TEST_NOT_HTTP, &["/calc"], ""),
    )
    .unwrap();
    let err = App::load(&manifest, &engine(Some(&common::cache_dir())))
        .err()
        .expect("must be rejected");
    let msg = err.to_string();
    assert!(msg.starts_with("/virtual/wasmfn.toml:3:"), "{msg}");
    assert!(msg.contains("function `calc`"), "{msg}");
    assert!(
        msg.contains("does not export wasi:http/incoming-handler"),
        "{msg}"
    );
}

#[test]
fn core_module_missing_file_and_garbage_are_load_errors() {
    let engine = engine(None);
    let dir = tempfile::tempdir().unwrap();
    let load = |file: &str, bytes: Option<&[u8]>| {
        let path = dir.path().join(file);
        if let Some(b) = bytes {
            std::fs::write(&path, b).unwrap();
        }
        let m =
            Manifest::parse(&dir.path().join("wasmfn.toml"), &entry("f", file, &[], "")).unwrap();
        engine.load(&m.functions[0]).err().expect("must fail")
    };
    // The smallest core module: valid WebAssembly, but not a component.
    let err = load("core.wasm", Some(b"\0asm\x01\0\0\0"));
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    assert!(matches!(load("missing.wasm", None), LoadError::Read { .. }));
    let err = load("garbage.cwasm", Some(b"not elf at all"));
    assert!(
        matches!(err, LoadError::NotPrecompiledComponent { .. }),
        "{err:?}"
    );
}

#[test]
fn cwasm_from_another_wasmtime_is_recompiled_from_its_wasm_or_rejected_clearly() {
    let engine = engine(None);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = engine.precompile(Path::new(guests::HELLO)).unwrap();
    // Pretend another wasmtime release made it: the engine section records the major
    // version as [format 0, length 2, "48"].
    let marker = [0u8, 2, b'4', b'8'];
    let at = bytes
        .windows(4)
        .position(|w| w == marker)
        .expect("version marker in .cwasm");
    bytes[at + 2..at + 4].copy_from_slice(b"47");
    let cwasm = dir.path().join("hello.cwasm");
    std::fs::write(&cwasm, &bytes).unwrap();
    let manifest = Manifest::parse(
        &dir.path().join("wasmfn.toml"),
        &entry("hello", "hello.cwasm", &[], ""),
    )
    .unwrap();

    let err = engine
        .load(&manifest.functions[0])
        .err()
        .expect("an incompatible .cwasm must be refused");
    assert!(matches!(err, LoadError::Incompatible { .. }), "{err}");
    assert!(
        err.to_string().contains("hello.wasm") && err.to_string().contains("wasmfn compile"),
        "{err}"
    );

    std::fs::copy(guests::HELLO, dir.path().join("hello.wasm")).unwrap();
    engine
        .load(&manifest.functions[0])
        .expect("recompiled from the .wasm beside it");
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_cache_is_written_reused_and_repaired() {
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::parse(
        Path::new("/virtual/wasmfn.toml"),
        &entry("hello", guests::HELLO, &["/hello"], ""),
    )
    .unwrap();
    let engine = engine(Some(cache.path()));
    engine.load(&manifest.functions[0]).unwrap();
    let files = |ext: &str| -> Vec<_> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    let entries = files("cwasm");
    assert_eq!(entries.len(), 1, "one entry per component: {entries:?}");
    // And one index naming it, so the next start finds it without hashing the .wasm.
    let index = files("index");
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(
        std::fs::read_to_string(&index[0]).unwrap(),
        entries[0].file_name().unwrap().to_str().unwrap()
    );
    let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    engine.load(&manifest.functions[0]).unwrap();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        modified,
        "second load reuses the entry"
    );

    // A damaged entry is replaced, not fatal.
    std::fs::write(&entries[0], b"truncated").unwrap();
    let app = App::load(&manifest, &engine).unwrap();
    let r = call(&app, "GET", "/hello", "").await;
    assert_eq!(r.status, 200);
    assert!(
        std::fs::metadata(&entries[0]).unwrap().len() > 1000,
        "entry rewritten"
    );

    // A component replaced at the same path is compiled afresh, never served from the
    // index of its old contents.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.wasm");
    std::fs::copy(guests::HELLO, &path).unwrap();
    let text = entry("f", path.to_str().unwrap(), &["/f/*"], "");
    let app = App::load(
        &Manifest::parse(Path::new("/virtual/wasmfn.toml"), &text).unwrap(),
        &engine,
    )
    .unwrap();
    assert_eq!(
        call(&app, "GET", "/f/x?name=A", "").await.text(),
        "Hello, A!\n"
    );
    std::fs::copy(guests::ECHO, &path).unwrap();
    let app = App::load(
        &Manifest::parse(Path::new("/virtual/wasmfn.toml"), &text).unwrap(),
        &engine,
    )
    .unwrap();
    let r = call(&app, "GET", "/f/x", "").await;
    assert_eq!(
        r.headers["x-echo-path"], "/f/x",
        "the new component answers"
    );
    assert_eq!(files("cwasm").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_reserved_paths() {
    let app = app(&entry("hello", guests::HELLO, &["/hello"], ""));
    let r = call(&app, "GET", "/nope", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no function is routed at /nope");
    assert_eq!(
        r.json()["request_id"],
        r.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        call(&app, "GET", "/.well-known/wasmfn/ready", "")
            .await
            .status,
        200
    );
    assert_eq!(
        call(&app, "GET", "/.well-known/wasmfn/live", "")
            .await
            .status,
        200
    );
    assert_eq!(
        call(&app, "GET", "/.well-known/wasmfn/other", "")
            .await
            .status,
        404
    );
}

#[test]
fn invoke_errors_are_typed() {
    // The server maps these to statuses; make sure the variants say what they are.
    let e = InvokeError::Deadline(Duration::from_millis(5));
    assert_eq!(e.to_string(), "function ran past its 5ms deadline");
}

// ---- CloudEvents ----

/// Headers of a binary-mode event of type `ty` carrying JSON `data`.
fn binary_event<'a>(ty: &'a str, id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/tests"),
        ("ce-type", ty),
        ("content-type", "application/json"),
    ]
}

async fn send_event(app: &App, ty: &str, data: serde_json::Value) -> Reply {
    call_with(
        app,
        "POST",
        "/",
        &binary_event(ty, "evt-1"),
        data.to_string(),
    )
    .await
}

fn saga_entry(name: &str, component: &str, events: &str, extra: &str) -> String {
    entry(name, component, &[], &format!("events = {events}\n{extra}"))
}

fn order(id: &str, quantity: u32, amount_cents: u64) -> serde_json::Value {
    serde_json::json!({ "order_id": id, "item": "widget", "quantity": quantity, "amount_cents": amount_cents })
}

#[tokio::test(flavor = "multi_thread")]
async fn event_echo() {
    let app = app(&saga_entry("echo", guests::EVENT_ECHO, "[{}]", ""));
    // Binary in, binary reply out: same data, type + ".echo", a new id.
    let mut headers = binary_event("order.created", "abc");
    headers.push(("ce-subject", "caf%C3%A9"));
    headers.push(("ce-partitionkey", "p1"));
    let r = call_with(&app, "POST", "/", &headers, r#"{"n":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ce-type"), Some("order.created.echo"));
    assert_eq!(r.header("ce-source"), Some("/tests"));
    assert_eq!(r.header("ce-subject"), Some("caf%C3%A9"));
    assert_eq!(r.header("ce-partitionkey"), Some("p1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = r.header("ce-id").unwrap();
    assert!(!id.is_empty() && id != "abc", "new id: {id}");
    assert_eq!(r.json(), serde_json::json!({"n": 1}));

    // JSON data comes back as sent: key order and every digit of a big number kept.
    let data = r#"{"z":1,"a":12345678901234567890123.000000000000000001,"m":[true,null]}"#;
    let r = call_with(&app, "POST", "/", &binary_event("big.numbers", "n1"), data).await;
    assert_eq!((r.status, r.text().as_str()), (200, data));

    // Structured in, structured reply out, data_base64 kept as binary.
    let structured = serde_json::json!({
        "specversion": "1.0", "id": "s1", "source": "/tests", "type": "blob.stored",
        "datacontenttype": "application/octet-stream", "data_base64": "AAEC/w==",
    });
    let r = call_with(
        &app,
        "POST",
        "/",
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        structured.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json")
    );
    let reply = r.json();
    assert_eq!(reply["type"], "blob.stored.echo");
    assert_eq!(reply["data_base64"], "AAEC/w==");

    // A batch: every event delivered, replies returned as a batch in order.
    let batch = serde_json::json!([
        { "specversion": "1.0", "id": "b1", "source": "/tests", "type": "a", "data": {"i": 1} },
        { "specversion": "1.0", "id": "b2", "source": "/tests", "type": "b", "data": {"i": 2} },
    ]);
    let r = call_with(
        &app,
        "POST",
        "/",
        &[("content-type", "application/cloudevents-batch+json")],
        batch.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let replies = r.json();
    assert_eq!(replies[0]["type"], "a.echo");
    assert_eq!(replies[1]["data"], serde_json::json!({"i": 2}));
    // An empty batch is valid and asks nothing.
    let r = call_with(
        &app,
        "POST",
        "/",
        &[("content-type", "application/cloudevents-batch+json")],
        "[]",
    )
    .await;
    assert_eq!(r.status, 202);

    // Malformed events are 400 with the reason; the request id comes along.
    let mut bad = binary_event("t", "1");
    bad.retain(|(k, _)| *k != "ce-source");
    let r = call_with(&app, "POST", "/", &bad, "{}").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing required attribute source"),
        "{}",
        r.text()
    );
    assert!(r.json()["request_id"].is_string());
    let r = call_with(
        &app,
        "POST",
        "/",
        &[("content-type", "application/cloudevents+xml")],
        "<e/>",
    )
    .await;
    assert_eq!(r.status, 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn event_display() {
    // A pure consumer: accepted with 202 and no reply. Only order events reach it here, so
    // anything else is a 404 the broker will retry and dead-letter, not a silent loss.
    let app = app(&saga_entry(
        "display",
        guests::EVENT_DISPLAY,
        r#"[{ filters = [{ prefix = { type = "order." } }] }]"#,
        "",
    ));
    let r = send_event(
        &app,
        "order.completed",
        serde_json::json!({"order_id": "o1"}),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (202, 0));
    let r = send_event(&app, "payment.completed", serde_json::json!({})).await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no function subscribes to events of type \"payment.completed\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_service() {
    let app = app(&saga_entry(
        "inventory",
        guests::INVENTORY_SERVICE,
        r#"[{ type = "order.created" }]"#,
        r#"variables = { "stock.widget" = "5" }"#,
    ));
    let r = send_event(&app, "order.created", order("o1", 2, 100)).await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("inventory.reserved"))
    );
    assert_eq!(r.header("ce-id"), Some("o1/inventory.reserved"));
    assert_eq!(r.header("ce-subject"), Some("o1"));
    let r = send_event(&app, "order.created", order("o2", 9, 100)).await;
    assert_eq!(r.header("ce-type"), Some("inventory.failed"));
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("only 5 of widget")
    );
    // Data that is not an order cannot succeed on retry: 422, so the broker dead-letters it.
    let r = send_event(&app, "order.created", serde_json::json!({"nope": true})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["function"], "inventory");
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_service() {
    let app = app(&saga_entry(
        "payment",
        guests::PAYMENT_SERVICE,
        r#"[{ type = "inventory.reserved" }]"#,
        r#"variables = { limit_cents = "1000" }"#,
    ));
    let r = send_event(&app, "inventory.reserved", order("o1", 1, 999)).await;
    assert_eq!(r.header("ce-type"), Some("payment.completed"));
    let r = send_event(&app, "inventory.reserved", order("o2", 1, 5000)).await;
    assert_eq!(r.header("ce-type"), Some("payment.failed"));
    assert!(r.json()["reason"].as_str().unwrap().contains("declined"));
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_compensator() {
    let app = app(&saga_entry(
        "compensator",
        guests::INVENTORY_COMPENSATOR,
        r#"[{ type = "payment.failed" }]"#,
        "",
    ));
    let r = send_event(&app, "payment.failed", order("o9", 1, 5000)).await;
    assert_eq!(r.header("ce-type"), Some("inventory.released"));
    assert_eq!(r.json()["order_id"], "o9");
}

#[tokio::test(flavor = "multi_thread")]
async fn order_service() {
    // One component, both handlers: HTTP for new orders, events for the saga's outcome.
    let app = app(&entry(
        "orders",
        guests::ORDER_SERVICE,
        &["/orders"],
        r#"events = [{ type = "payment.completed" }, { type = "inventory.failed" }, { type = "inventory.released" }]"#,
    ));
    // Without a sink, order.created is dispatched in-process; no one here subscribes.
    let r = call_with(
        &app,
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        r#"{"item":"widget","quantity":1,"amount_cents":500}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let order_id = r.json()["order_id"].as_str().unwrap().to_string();
    assert!(order_id.starts_with("ord-"), "{order_id}");
    let r = call_with(
        &app,
        "POST",
        "/orders",
        &[],
        r#"{"item":"widget","quantity":0,"amount_cents":1}"#,
    )
    .await;
    assert_eq!(r.status, 400);

    let r = send_event(&app, "payment.completed", order("o1", 1, 500)).await;
    assert_eq!(r.header("ce-type"), Some("order.completed"));
    let r = send_event(&app, "inventory.released", order("o2", 1, 500)).await;
    assert_eq!(r.header("ce-type"), Some("order.failed"));
    assert_eq!(r.json()["reason"], "inventory.released");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_subscribers_all_run_and_replies_are_emitted() {
    // Two functions match: both run, the response is 202, and replies go onward (here
    // in-process, to the payment service, whose own reply has no subscriber).
    let manifest = [
        saga_entry(
            "inventory",
            guests::INVENTORY_SERVICE,
            r#"[{ type = "order.created" }]"#,
            r#"variables = { "stock.widget" = "5" }"#,
        ),
        saga_entry("display", guests::EVENT_DISPLAY, "[{}]", ""),
        saga_entry(
            "payment",
            guests::PAYMENT_SERVICE,
            r#"[{ type = "inventory.reserved" }]"#,
            "",
        ),
    ]
    .concat();
    let app = app(&manifest);
    let r = send_event(&app, "order.created", order("o1", 1, 100)).await;
    assert_eq!((r.status, r.body.len()), (202, 0), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_plain_http_until_a_function_subscribes() {
    // With no event functions, a CloudEvent POSTed to a routed path is just a request.
    let app = app(&entry("echo", guests::ECHO, &["/*"], ""));
    let r = send_event(&app, "order.created", serde_json::json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-header-ce-type"), Some("order.created"));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_process_dispatch_stops_a_loop_at_the_hop_limit() {
    // Two subscribers to everything: each event's echo is emitted back to both, forever,
    // unless the host stops it. The failure surfaces as a retryable 503 naming the loop.
    let manifest = [
        saga_entry("echo", guests::EVENT_ECHO, "[{}]", ""),
        saga_entry("display", guests::EVENT_DISPLAY, "[{}]", ""),
    ]
    .concat();
    let app = app(&manifest);
    let r = send_event(&app, "ping", serde_json::json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("looks like a loop"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn knative_forwarding_and_trace_headers_reach_the_guest() {
    // Knative's runtime contract: Forwarded, X-Forwarded-* and traceparent reach the app.
    let app = app(&entry("echo", guests::ECHO, &["/echo"], ""));
    let headers = [
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let r = call_with(&app, "GET", "/echo", &headers, "").await;
    assert_eq!(r.status, 200);
    for (name, value) in headers {
        assert_eq!(
            r.header(&format!("x-echo-header-{name}")),
            Some(value),
            "{name}"
        );
    }
}
