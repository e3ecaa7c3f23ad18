//! Plain HTTP functions: SDK and standard `wasi:http` components, both HTTP paths, request
//! ids, unknown routes and the host's own paths.

use std::path::Path;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmfn_guest_artifacts as guests;

use super::{app, call, call_with, engine, entry, post_as};

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn hello() {
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
pub(crate) async fn echo() {
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
    let whole = post_as(&app, "/echo/x?y=1", "text/plain", body.clone()).await;
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

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn core_model_api() {
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
    let model =
        |name: &str, body: &'static str| call(&app, "POST", format!("/api/v1/models/{name}"), body);
    let r = model(
        "mortgage",
        r#"{"principal":300000,"annual_rate_percent":6,"years":30}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["monthly_payment"], 1798.65);
    assert_eq!(r.json()["payments"], 360);
    let valuation = r#"{"sqft":1500,"bedrooms":3,"bathrooms":2,"year_built":2025}"#;
    let r = model("valuation", valuation).await;
    assert_eq!(
        r.json()["estimate"],
        1500.0 * 210.0 + 3.0 * 9500.0 + 2.0 * 12000.0
    );
    assert_eq!(r.json()["model"], "valuation-t1");
    let yields = r#"{"price":200000,"monthly_rent":1000,"annual_costs":2000}"#;
    let r = model("rental-yield", yields).await;
    assert_eq!(
        (
            r.json()["gross_yield_percent"].as_f64(),
            r.json()["net_yield_percent"].as_f64()
        ),
        (Some(6.0), Some(5.0))
    );
    // Bad input is the client's fault, and the guest says what was wrong.
    let r = model("mortgage", r#"{"principal":1,"years":30}"#).await;
    r.assert_error(400, "annual_rate_percent");
    assert_eq!(
        call(&app, "GET", "/api/v1/models/mortgage", "")
            .await
            .status,
        405
    );
    assert_eq!(call(&app, "GET", "/api/v1/nothing", "").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn raw_wasi_http() {
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
