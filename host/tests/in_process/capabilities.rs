//! What a function can use beyond its request, each through the standard interface, with a
//! real guest and real parts: key-value stores (in memory and in an embedded SQLite file),
//! config and secrets from the environment and files, outbound HTTP and HTTPS to real
//! servers on loopback (a test CA for HTTPS), and calls to other functions of the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use wasmfn::capabilities::CapabilityOptions;
use wasmfn::engine::HOP_LIMIT;
use wasmfn::server::{App, HostOptions};
use wasmfn_guest_artifacts as guests;

use super::common::{serve_http, text_response};
use super::{Reply, app, call, call_with, deep_app, engine, entry, post_as};

/// A manifest whose `default` store lives in memory.
fn in_memory(functions: &str) -> String {
    format!("[key_value.default]\ntype = \"memory\"\n\n{functions}")
}

fn app_with(manifest: &str, options: CapabilityOptions) -> Arc<App> {
    let options = HostOptions {
        capabilities: options,
        ..HostOptions::default()
    };
    wasmfn::testing::app_with(
        manifest,
        &engine(Some(&super::common::cache_dir())),
        options,
    )
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn counter() {
    let app = app(&in_memory(&entry(
        "counter",
        guests::COUNTER,
        &["/counter/*"],
        "key_value_stores = [\"default\"]",
    )));
    for n in 1..=3 {
        assert_eq!(
            call(&app, "POST", "/counter/a", "").await.text(),
            format!("{n}\n")
        );
    }
    assert_eq!(call(&app, "GET", "/counter/a", "").await.text(), "3\n");
    assert_eq!(call(&app, "GET", "/counter/b", "").await.text(), "0\n");
    assert_eq!(call(&app, "DELETE", "/counter/a", "").await.status, 204);
    assert_eq!(call(&app, "GET", "/counter/a", "").await.text(), "0\n");

    // Ten at once in one store: every increment counted once.
    let calls = (0..10).map(|_| call(&app, "POST", "/counter/c", ""));
    futures_util::future::join_all(calls).await;
    assert_eq!(call(&app, "GET", "/counter/c", "").await.text(), "10\n");

    // A key over the store's limit is the caller's fault, which retrying cannot fix: 400
    // (an event handler's `?` then rejects the event instead of having it redelivered).
    let r = call(&app, "POST", format!("/counter/{}", "k".repeat(1100)), "").await;
    r.assert_error(400, "at most 1024 bytes");

    // Pointed at a store the manifest does not declare: a 500 that says which.
    let misconfigured = super::app(&in_memory(&entry(
        "counter",
        guests::COUNTER,
        &["/counter/*"],
        "key_value_stores = [\"default\"]\nvariables = { store = \"sessions\" }",
    )));
    let r = call(&misconfigured, "POST", "/counter/a", "").await;
    r.assert_error(500, "no key-value store is labelled `sessions`");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn todo_api() {
    // The embedded store, in a data directory of the test's own.
    let data = tempfile::tempdir().unwrap();
    let app = app_with(
        &entry(
            "todo",
            guests::TODO_API,
            &["/todos", "/todos/*"],
            "key_value_stores = [\"default\"]",
        ),
        CapabilityOptions {
            data_dir: Some(data.path().to_path_buf()),
            ..CapabilityOptions::default()
        },
    );
    let json = "application/json";
    let r = post_as(&app, "/todos", json, r#"{"title":"write tests"}"#).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], 1);
    let r = post_as(&app, "/todos", json, r#"{"title":"ship"}"#).await;
    assert_eq!(r.json()["id"], 2);
    post_as(&app, "/todos", json, r#"{"done":true}"#)
        .await
        .assert_error(422, "title");
    post_as(&app, "/todos", json, r#"{"title":"  "}"#)
        .await
        .assert_error(422, "title");

    let list = call(&app, "GET", "/todos", "").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["title"], "write tests");
    let r = call(&app, "PUT", "/todos/1", r#"{"done":true}"#).await;
    assert_eq!((r.status, r.json()["done"].as_bool()), (200, Some(true)));
    assert_eq!(call(&app, "GET", "/todos/1", "").await.json()["done"], true);
    assert_eq!(call(&app, "GET", "/todos/9", "").await.status, 404);
    assert_eq!(call(&app, "DELETE", "/todos/2", "").await.status, 204);
    assert_eq!(call(&app, "DELETE", "/todos/2", "").await.status, 404);
    assert!(data.path().join("default.sqlite").is_file());
}

/// An upstream: `/hello` answers, `/slow` takes three seconds, `/status/503` fails.
async fn upstream() -> std::net::SocketAddr {
    serve_http(|req: http::Request<Bytes>| async move {
        match req.uri().path() {
            "/hello" => {
                let trace = req
                    .headers()
                    .get("traceparent")
                    .map_or("none", |v| v.to_str().unwrap_or("?"))
                    .to_string();
                text_response(200, format!("hi from upstream; traceparent {trace}"))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                text_response(200, "late")
            }
            "/status/503" => text_response(503, "upstream is down"),
            _ => text_response(404, "no"),
        }
    })
    .await
}

async fn fetch(app: &App, url: &str) -> Reply {
    call(app, "GET", format!("/call?url={url}"), "").await
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn outbound_call() {
    let up = upstream().await;
    let port = up.port();
    let app = app(&(entry(
        "call",
        guests::OUTBOUND_CALL,
        &["/call"],
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{port}\", \"http://*.wasmfn.internal\"]\ntimeout = \"1s\""
        ),
    ) + &entry(
        "wildcard",
        guests::OUTBOUND_CALL,
        &["/wild/call"],
        &format!("allowed_outbound_hosts = [\"http://*:{port}\"]"),
    ) + &entry(
        "hello",
        guests::HELLO,
        &["/hello"],
        "variables = { greeting = \"Hi\" }",
    )));

    let r = fetch(&app, &format!("http://127.0.0.1:{port}/hello")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("hi from upstream"), "{}", r.text());
    // The caller's trace goes on to the upstream.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let uri = format!("/call?url=http://127.0.0.1:{port}/hello");
    let r = call_with(&app, "GET", &uri, &[("traceparent", tp)], "").await;
    assert_eq!(r.text(), format!("hi from upstream; traceparent {tp}"));
    // The upstream's own failure is a response like any other.
    let r = fetch(&app, &format!("http://127.0.0.1:{port}/status/503")).await;
    assert_eq!(
        (r.status, r.header("x-upstream-status")),
        (503, Some("503"))
    );

    // Another host name, another port, another scheme: denied, and the guest says so.
    for url in [
        format!("http://localhost:{port}/hello"),
        format!("http://127.0.0.1:{}/hello", port + 1),
        format!("https://127.0.0.1:{port}/hello"),
        "http://example.com/".to_string(),
    ] {
        fetch(&app, &url)
            .await
            .assert_error(500, "not in this function's allowed_outbound_hosts");
    }
    // A host wildcard with a port allows any name on that port.
    let r = call(
        &app,
        "GET",
        format!("/wild/call?url=http://localhost:{port}/hello"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Another function of this host, without a socket.
    let r = fetch(&app, "http://hello.wasmfn.internal/hello?name=Ada").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hi, Ada!\n"));
    let r = fetch(&app, "http://nobody.wasmfn.internal/").await;
    assert_eq!(r.status, 502, "{}", r.text());

    // A slow upstream (3 s) is cut at the function's deadline (1 s): the call fails
    // rather than answering.
    let r = fetch(&app, &format!("http://127.0.0.1:{port}/slow")).await;
    assert!(matches!(r.status, 502 | 504), "{} {}", r.status, r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_concurrency_bounds_a_functions_calls_at_once() {
    // An upstream that holds each request a while and counts how many it holds at once.
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (held, peak) = (now.clone(), most.clone());
    let up = serve_http(move |_| {
        let (held, peak) = (held.clone(), peak.clone());
        async move {
            let at_once = held.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(at_once, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            held.fetch_sub(1, Ordering::SeqCst);
            text_response(200, "held")
        }
    })
    .await;
    let app = app(&entry(
        "call",
        guests::OUTBOUND_CALL,
        &["/call"],
        &format!(
            "allowed_outbound_hosts = [\"http://{up}\"]\noutbound_concurrency = 2\ntimeout = \"30s\""
        ),
    ));
    let url = format!("http://{up}/");
    let calls = (0..6).map(|_| fetch(&app, &url));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!((r.status, r.text().as_str()), (200, "held"));
    }
    // Six instances called at once; the upstream never held more than two of their calls,
    // and the waiting ones went on as slots freed (all six answered).
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(now.load(Ordering::SeqCst), 0);
}

/// `/call` on function `caller` calling itself `calls` times in a chain, by URLs nested
/// that deep; the innermost call asks for no further call.
fn nested_calls(calls: u32) -> String {
    let mut uri = "/call?n=0&url=unused".to_string();
    for _ in 0..calls {
        let url = format!("http://caller.wasmfn.internal{uri}");
        uri = format!(
            "/call?url={}",
            url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        );
    }
    uri
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_between_functions_stop_at_the_hop_limit() {
    let app = deep_app(&entry(
        "caller",
        guests::OUTBOUND_CALL,
        &["/call"],
        "allowed_outbound_hosts = [\"http://*.wasmfn.internal\"]",
    ));
    // HOP_LIMIT calls in a row: the innermost answers 204, and so does every caller.
    let r = call(&app, "GET", nested_calls(HOP_LIMIT), "").await;
    assert_eq!(
        (r.status, r.header("x-upstream-status")),
        (204, Some("204")),
        "{}",
        r.text()
    );
    // One more is refused as a loop, and the guest's call fails: the same depth as an event
    // loop (events.rs).
    let r = call(&app, "GET", nested_calls(HOP_LIMIT + 1), "").await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert_eq!(
        r.header("x-upstream-status"),
        Some(r.status.to_string().as_str())
    );
}

/// A TLS server for `localhost` with a certificate from a CA made here; returns its address
/// and the CA's certificate file.
async fn tls_upstream(dir: &std::path::Path) -> (std::net::SocketAddr, std::path::PathBuf) {
    let (ca_pem, cert, key) = super::common::localhost_certificate();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(text_response(200, "hi over TLS"))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca_file)
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_https_trusts_an_extra_ca_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca_file) = tls_upstream(dir.path()).await;
    let manifest = entry(
        "call",
        guests::OUTBOUND_CALL,
        &["/call"],
        "allowed_outbound_hosts = [\"https://localhost:*\"]",
    );
    let url = format!("https://localhost:{}/x", addr.port());

    let trusting = app_with(
        &manifest,
        CapabilityOptions {
            ca_file: Some(ca_file),
            ..CapabilityOptions::default()
        },
    );
    let r = fetch(&trusting, &url).await;
    assert_eq!((r.status, r.text().as_str()), (200, "hi over TLS"));

    // Without the CA the certificate is not trusted: the call fails, nothing is sent.
    let r = fetch(&super::app(&manifest), &url).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("Tls"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn raw_capabilities() {
    // Written with wit-bindgen against the WASI WIT files, no wasmfn code.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-secret\n").unwrap();
    let up = upstream().await;
    // SAFETY: set before the app resolves its variables; no other test reads this name.
    unsafe { std::env::set_var("WASMFN_TEST_RAW_CAPS_REGION", "eu-west") };
    let app = app(&format!(
        "[key_value.default]\ntype = \"memory\"\n[key_value.sessions]\ntype = \"memory\"\n\n{}{}",
        entry(
            "raw",
            guests::RAW_CAPABILITIES,
            &["/raw-caps/*"],
            &format!(
                "key_value_stores = [\"default\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\nvariables = {{ plain = \"literal\", region = {{ env = \"WASMFN_TEST_RAW_CAPS_REGION\" }}, token = {{ file = {:?} }}, fallback = {{ env = \"WASMFN_TEST_UNSET\", default = \"dflt\" }} }}",
                up.port(),
                dir.path().join("token").display()
            ),
        ),
        // Grants `sessions`, so it is a declared store that `raw` may not open.
        entry(
            "other",
            guests::COUNTER,
            &["/counter/*"],
            "key_value_stores = [\"sessions\"]"
        ),
    ));
    for (name, value) in [
        ("plain", "literal"),
        ("region", "eu-west"),
        ("token", "file-secret"),
        ("fallback", "dflt"),
    ] {
        let r = call(&app, "GET", format!("/raw-caps/config/{name}"), "").await;
        assert_eq!((r.status, r.text().as_str()), (200, value), "{name}");
    }
    // The guest sees only its variables, never the host's environment.
    assert_eq!(
        call(&app, "GET", "/raw-caps/config/PATH", "").await.status,
        404
    );

    let kv = |store: &str, op: &str, key: Vec<u8>| {
        let app = app.clone();
        let uri = format!("/raw-caps/kv/{store}/{op}");
        async move { call(&app, "POST", uri, key).await.text() }
    };
    assert_eq!(kv("default", "increment", b"n".to_vec()).await, "1");
    assert_eq!(kv("default", "increment", b"n".to_vec()).await, "2");
    assert_eq!(kv("default", "get", b"n".to_vec()).await, "value: 2");
    // A guest written for `wasmtime serve -S keyvalue` opens the empty identifier: it is
    // the `default` store.
    assert_eq!(kv("", "get", b"n".to_vec()).await, "value: 2");
    assert_eq!(
        kv("sessions", "open", vec![]).await,
        "error: Error::AccessDenied"
    );
    assert_eq!(
        kv("nowhere", "open", vec![]).await,
        "error: Error::NoSuchStore"
    );
    // Hostile keys and values: a clear error, and nothing stored or lost.
    assert!(
        kv("default", "get", vec![])
            .await
            .contains("must not be empty")
    );
    let long_key = vec![b'k'; 1 << 20];
    assert!(
        kv("default", "set", long_key)
            .await
            .contains("at most 1024 bytes")
    );
    let r = call(&app, "POST", "/raw-caps/kv/default/set?size=4194305", "big").await;
    assert!(r.text().contains("at most 4194304 bytes"), "{}", r.text());
    assert_eq!(kv("default", "get", b"big".to_vec()).await, "none");
    let r = call(&app, "POST", "/raw-caps/kv/default/set?value=text", "t").await;
    assert_eq!(r.text(), "ok");
    assert!(
        kv("default", "increment", b"t".to_vec())
            .await
            .contains("not a counter")
    );
    assert_eq!(kv("default", "get", b"t".to_vec()).await, "value: text");

    let r = call(
        &app,
        "GET",
        format!("/raw-caps/fetch?url=http://127.0.0.1:{}/hello", up.port()),
        "",
    )
    .await;
    assert!(
        r.text().starts_with("upstream 200: hi from upstream"),
        "{}",
        r.text()
    );
    let r = call(&app, "GET", "/raw-caps/fetch?url=http://localhost:1/", "").await;
    assert_eq!(r.text(), "error: ErrorCode::HttpRequestDenied");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_keyvalue_draft2() {
    // wasi:keyvalue@0.2.0-draft2, which Spin's SDKs and wasmCloud import, from a component
    // written with wit-bindgen against its WIT: every function, over the same stores.
    let app = app(&in_memory(&entry(
        "kv2",
        guests::TEST_KEYVALUE_DRAFT2,
        &["/kv2/*"],
        "key_value_stores = [\"default\"]",
    )));
    let r = call(&app, "GET", "/kv2/script", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "open nope: Some(Error::NoSuchStore)\n\
         set a: Ok(())\n\
         cas current: 1\n\
         swap: true\n\
         get a: 2\n\
         stale swap: failed, now 3\n\
         retry: true\n\
         get a: 4\n\
         absent current: (none)\n\
         swap absent: true\n\
         exists fresh: Ok(true)\n\
         increment n 5: Ok(5)\n\
         increment n -1: Err(Error::Other(\"invalid: this host's counters only count up (they are non-negative), so the delta must not be negative, got -1\"))\n\
         get-many: b1=x,missing=(none),b2=y\n\
         keys: a,fresh,n\n\
         bad cursor: Some(Error::Other(\"invalid: the cursor is not one this store returned\"))\n"
    );
    for n in 1..=3 {
        assert_eq!(call(&app, "POST", "/kv2/cas-add", "").await.text(), "1\n");
        assert_eq!(
            call(&app, "GET", "/kv2/count", "").await.text(),
            format!("{n}\n")
        );
    }
}
