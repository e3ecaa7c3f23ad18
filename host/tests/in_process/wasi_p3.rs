//! WASI 0.3 components: a plain `wasip3` guest served beside 0.2 ones, its instances reused
//! within their limits, its failures confined to the instance that failed; and a component
//! built for WASI 0.3's release candidate of 2026-03-15 served, and one built for any other
//! refused with what it wants.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use wasmfn::server::App;
use wasmfn_guest_artifacts as guests;

use super::common::Reply;
use super::{app, call, common, entry, refused};

fn instance(r: &Reply) -> String {
    r.headers["x-instance"].to_str().unwrap().to_string()
}

fn served(r: &Reply) -> u32 {
    r.headers["x-served"].to_str().unwrap().parse().unwrap()
}

/// A function of the plain WASI 0.3 guest under `/p3/*`, with `extra` manifest keys.
fn p3(extra: &str) -> String {
    entry("p3", guests::WASI_P3_HTTP, &["/p3/*"], extra)
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn wasi_p3_http() {
    let app = app(&(p3("max_body = \"64KiB\"") + &entry("hello", guests::HELLO, &["/hello"], "")));
    let r = call(&app, "GET", "/p3/hello", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Hello from WASI 0.3\n");
    assert_eq!(
        call(&app, "GET", "/hello", "").await.status,
        200,
        "a 0.2 function beside it"
    );
    assert_eq!(
        call(&app, "GET", "/p3/nothing-here", "").await.status,
        404,
        "the guest's own status"
    );

    // One instance serves request after request.
    let first = call(&app, "GET", "/p3/hello", "").await;
    let second = call(&app, "GET", "/p3/hello", "").await;
    assert_eq!(instance(&first), instance(&second));
    assert_eq!(served(&second), served(&first) + 1);

    // A body streamed both ways, chunk by chunk, and trailers back.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..16)
        .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i as u8; 4096]))))
        .chain([Ok(Frame::trailers({
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", "abc".parse().unwrap());
            t
        }))])
        .collect();
    let request = http::Request::post("/p3/echo")
        .header("host", "example.test")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    assert_eq!(body.len(), 16 * 4096);
    assert!(
        body[..4096].iter().all(|b| *b == b'a') && body[15 * 4096..].iter().all(|b| *b == b'p')
    );
    assert_eq!(
        trailers.expect("trailers came back")["x-checksum"],
        "abc",
        "the request's trailers, echoed"
    );

    // A body streamed out over time arrives whole.
    let r = call(&app, "GET", "/p3/stream?chunks=20", "").await;
    assert_eq!((r.status, r.body.len()), (200, 20 * 1024));

    // A body announced over max_body is refused before the guest runs. (One that turns
    // out too large while the guest streams its answer cannot get a 413 once the head is
    // out: the guest reads an error, and today its answer arrives as a clean 200.)
    let r = call(&app, "POST", "/p3/echo", vec![0u8; 100 * 1024]).await;
    assert_eq!(r.status, 413, "{}", r.text());

    // Error codes the guest answers with instead of a response.
    for (code, status) in [
        ("denied", 502),
        ("timeout", 504),
        ("body-size", 413),
        ("x", 500),
    ] {
        let r = call(&app, "GET", format!("/p3/error?code={code}"), "").await;
        assert_eq!(r.status, status, "{code}: {}", r.text());
        assert_eq!(r.json()["function"], "p3");
    }
}

/// Sends `n` requests at once and returns the replies.
async fn at_once(app: &App, n: usize, uri: &str) -> Vec<Reply> {
    let calls = (0..n).map(|_| call(app, "GET", uri, ""));
    futures_util::future::join_all(calls).await
}

fn per_instance(replies: &[Reply]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in replies {
        assert_eq!(r.status, 200, "{}", r.text());
        *seen.entry(instance(r)).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_serve_within_their_reuse_limits() {
    // max_requests: a fourth request goes to a new instance.
    let app = app(&p3(
        "reuse = { max_requests = 3, max_concurrent = 1, idle = \"1h\" }",
    ));
    let mut replies = Vec::new();
    for _ in 0..7 {
        replies.push(call(&app, "GET", "/p3/hello", "").await);
    }
    let counts: Vec<u32> = replies.iter().map(served).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(instance(&replies[0]), instance(&replies[2]));
    assert_ne!(instance(&replies[2]), instance(&replies[3]));
    // idle: an instance left idle past it is retired (a lower-bound wait: 800 ms is past
    // an idle of 200 ms however slow the machine).
    let short = super::app(&p3("reuse = { idle = \"200ms\" }"));
    assert_eq!(served(&call(&short, "GET", "/p3/hello", "").await), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = call(&short, "GET", "/p3/hello", "").await;
    assert_eq!(served(&r), 1, "a fresh instance after the idle time");
    // max_concurrent = 1: eight overlapping requests need eight instances.
    let replies = at_once(&app, 8, "/p3/sleep?ms=300").await;
    assert_eq!(per_instance(&replies).len(), 8);
    let metrics = call(&app, "GET", "/.well-known/wasmfn/metrics", "")
        .await
        .text();
    assert!(
        metrics.contains("wasmfn_instance_requests_count{function=\"p3\"}"),
        "{metrics}"
    );

    // max_concurrent = 4: no instance takes more than four at once, and instances do take
    // several at once.
    let app = super::app(&p3("reuse = { max_concurrent = 4 }"));
    call(&app, "GET", "/p3/hello", "").await;
    let replies = at_once(&app, 8, "/p3/sleep?ms=300").await;
    let seen = per_instance(&replies);
    assert!(seen.values().all(|n| *n <= 4), "{seen:?}");
    assert!(
        seen.len() < 8,
        "some instance served several at once: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_fails_only_the_requests_of_its_instance() {
    // One request per instance at a time: the trap has an instance of its own, and the
    // requests in the others finish.
    let app = app(&p3("reuse = { max_concurrent = 1 }"));
    let (slow, trapped) = tokio::join!(at_once(&app, 2, "/p3/sleep?ms=400"), async {
        common::until_instances(&app, 2).await;
        call(&app, "GET", "/p3/trap", "").await
    });
    assert_eq!(trapped.status, 500, "{}", trapped.text());
    let id = trapped.headers["x-request-id"].to_str().unwrap();
    assert_eq!(trapped.json()["request_id"], id);
    assert!(trapped.text().contains("trapped"), "{}", trapped.text());
    assert_eq!(per_instance(&slow).len(), 2, "both others finished");

    // Several at a time: the trap lands in the instance already running a request, whose
    // answer is cut off with it; the next request gets a new instance.
    let app = super::app(&p3(""));
    let warm = call(&app, "GET", "/p3/hello", "").await;
    let (held, mut running) = held_echo(&app).await;
    assert_eq!(instance_of(running.headers()), instance(&warm));
    let trapped = call(&app, "GET", "/p3/trap", "").await;
    assert_eq!(trapped.status, 500, "{}", trapped.text());
    // The rest of its body finds no guest to echo it. (The cut shows as a clean end of
    // the body today, not as an error: issue 30's cut-off responses.)
    let _ = held
        .send(Ok(Frame::data(Bytes::from_static(b" and the rest"))))
        .await;
    drop(held);
    let rest = running.body_mut().collect().await.map(|b| b.to_bytes());
    assert!(
        !rest.as_ref().is_ok_and(|b| !b.is_empty()),
        "it shared the trapped instance, yet went on: {rest:?}"
    );
    let after = call(&app, "GET", "/p3/hello", "").await;
    assert_eq!(after.status, 200);
    assert_ne!(instance(&after), instance(&warm));
    assert_eq!(served(&after), 1);
}

/// A request the p3 guest is provably running: a POST to `echo` whose body stays open
/// until the sender is dropped. Its response head and the echo of its first chunk are back,
/// so the guest holds it (the rest of the body is the caller's to read).
async fn held_echo(
    app: &App,
) -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    http::Response<wasmfn::engine::ResponseBody>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let frames = futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let request = http::Request::post("/p3/echo")
        .header("host", "example.test")
        .body(StreamBody::new(frames))
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let mut response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    let first = response.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first", "the guest echoed it");
    (tx, response)
}

fn instance_of(headers: &http::HeaderMap) -> String {
    headers["x-instance"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_deadline_gets_504_and_the_rest_are_served() {
    let app = app(&p3("timeout = \"300ms\""));
    // Computing forever: only the epoch deadline stops it.
    let r = call(&app, "GET", "/p3/loop", "").await;
    r.assert_error(504, "300ms");
    assert_eq!(call(&app, "GET", "/p3/hello", "").await.status, 200);

    // Waiting too long: that request gets its 504; one sent once it was admitted is served.
    // (Which instance serves it is wasmtime's handler's choice: it starts another worker
    // whenever none is marked available at that moment, so it is not asserted.) An
    // instance that let a request miss its deadline takes no more: the next request
    // starts a new one.
    let warm = call(&app, "GET", "/p3/hello", "").await;
    let late = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "GET", "/p3/sleep?ms=5000", "").await }
    });
    common::until_requests(&app, 1).await;
    let quick = call(&app, "GET", "/p3/sleep?ms=10", "").await;
    assert_eq!(quick.status, 200, "{}", quick.text());
    late.await.unwrap().assert_error(504, "300ms");
    // Its instance is retired soon after (a request sent in that moment can land in it and
    // fail with it: issue 30), so wait for that before the next.
    common::until_no_instances(&app).await;
    let after = call(&app, "GET", "/p3/hello", "").await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_ne!(instance(&after), instance(&warm));
    assert_eq!(served(&after), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_limit_applies_to_each_instance() {
    let app = app(&p3("memory = \"12MiB\"\nreuse = { max_concurrent = 1 }"));
    // Two instances at once, each holding 6 MiB: each is within its own limit.
    let (a, b) = tokio::join!(
        call(&app, "GET", "/p3/hold?mb=6&ms=300", ""),
        call(&app, "GET", "/p3/hold?mb=6&ms=300", "")
    );
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "{} {}",
        a.text(),
        b.text()
    );
    assert_ne!(instance(&a), instance(&b));
    // One instance past it traps, and the function keeps serving.
    let r = call(&app, "GET", "/p3/hold?mb=20", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(call(&app, "GET", "/p3/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_wasi_rc() {
    // Built for WASI 0.3's release candidate of 2026-03-15 (the `wasip3` crate 0.6), which
    // Spin's SDKs still import: its WIT is 0.3.0's, so 0.3.0's implementations serve it,
    // as Spin 4 serves it, and it precompiles.
    let app = app(&entry("rc", guests::TEST_WASI_RC, &["/rc"], ""));
    let r = call(&app, "GET", "/rc", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from a WASI 0.3 release candidate\n")
    );
    super::engine(None)
        .precompile(std::path::Path::new(guests::TEST_WASI_RC))
        .expect("the candidate this host serves precompiles");

    // Any other candidate is refused at start, at load from the cache and when
    // precompiled, naming what it wants and what this host serves: here the same
    // component, its names changed to a candidate of the next day.
    let mut bytes = std::fs::read(guests::TEST_WASI_RC).unwrap();
    let (served, other) = (b"0.3.0-rc-2026-03-15", b"0.3.0-rc-2026-03-16");
    for at in 0..bytes.len().saturating_sub(served.len()) {
        if bytes[at..].starts_with(served) {
            bytes[at..at + other.len()].copy_from_slice(other);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other_rc.wasm");
    std::fs::write(&path, bytes).unwrap();
    let precompiled = super::engine(None)
        .precompile(&path)
        .expect_err("another candidate is not precompiled")
        .to_string();
    assert!(
        precompiled.contains("WASI 0.3.0-rc-2026-03-16"),
        "{precompiled}"
    );
    let rc = entry("rc", path.to_str().unwrap(), &["/rc"], "");
    for cache in [None, Some(common::cache_dir())] {
        let msg = refused(&rc, cache.as_deref());
        assert!(msg.starts_with("/virtual/wasmfn.toml:3:"), "{msg}");
        assert!(msg.contains("function `rc`"), "{msg}");
        assert!(
            msg.contains("it is built for WASI 0.3.0-rc-2026-03-16, which this host does not serve (exports wasi:http/handler@0.3.0-rc-2026-03-16"),
            "{msg}"
        );
        assert!(
            msg.contains("WASI 0.3 components (exporting wasi:http/handler@0.3.0"),
            "{msg}"
        );
        assert!(!msg.contains("not a valid WebAssembly component"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_cut_off_at_its_deadline_ends_in_an_error_not_in_silence() {
    // 10,000 chunks, one a millisecond, against a 300 ms deadline: the head is out (200)
    // when the instance is stopped. The body must then end in an error, which hyper turns
    // into a connection closed without its last chunk (HTTP/1.1) or a reset stream (h2),
    // never into an end that looks complete.
    let app = app(&p3("timeout = \"300ms\""));
    let request = http::Request::get("/p3/stream?chunks=10000")
        .header("host", "example.test")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    let error = match response.into_body().collect().await {
        Ok(body) => panic!(
            "a cut-off body ended cleanly, after {} bytes",
            body.to_bytes().len()
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("before its response was complete") && error.contains("deadline"),
        "{error}"
    );
    // A body the guest finishes within its deadline still ends cleanly.
    let r = call(&app, "GET", "/p3/stream?chunks=20", "").await;
    assert_eq!((r.status, r.body.len()), (200, 20 * 1024));
}

/// What a sink received: each event's type, `traceparent` and data.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

/// A sink that takes every event, and what it took.
async fn sink() -> (std::net::SocketAddr, Received) {
    let received = Received::default();
    let seen = received.clone();
    let addr = common::serve_http(move |req: http::Request<Bytes>| {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let data = serde_json::from_slice(req.body()).unwrap_or(serde_json::Value::Null);
        seen.lock()
            .unwrap()
            .push((h("ce-type").unwrap_or_default(), h("traceparent"), data));
        async { common::text_response(202, "") }
    })
    .await;
    (addr, received)
}

/// An upstream answering with the `traceparent` it was sent.
async fn trace_echo() -> std::net::SocketAddr {
    common::serve_http(|req: http::Request<Bytes>| {
        let trace = req
            .headers()
            .get("traceparent")
            .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
        async move { common::text_response(200, trace) }
    })
    .await
}

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

/// The WASI 0.3 SDK (`async fn` handlers): hello, a streamed echo, JSON, key-value,
/// outbound and internal calls, emitted events carrying the request's trace, and an event
/// handler that replies and emits; then interleaved requests in one instance, each of
/// whose emitted event and outbound call carries its own request's trace.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn hello_p3() {
    let (sink, received) = sink().await;
    let upstream = trace_echo().await;
    let manifest = format!(
        "[key_value.default]\ntype = \"memory\"\n\n{}{}",
        entry(
            "sdk3",
            guests::HELLO_P3,
            &["/sdk3/*"],
            &format!(
                "key_value_stores = [\"default\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\", \"http://hello.wasmfn.internal\"]\nevents = [{{ type = \"p3.ping\" }}, {{ type = \"p3.wait\" }}, {{ type = \"p3.trap\" }}]",
                upstream.port()
            )
        ),
        entry("hello", guests::HELLO, &["/hello"], ""),
    );
    let options = wasmfn::server::HostOptions {
        events: wasmfn::events::EventOptions::new(Some(&format!("http://{sink}/")), None).unwrap(),
        ..Default::default()
    };
    let app = wasmfn::testing::app_with(
        &manifest,
        &super::engine(Some(&common::cache_dir())),
        options,
    );

    let r = call(&app, "GET", "/sdk3/hello?name=Ada", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, Ada!\n"));

    // Streamed back chunk by chunk.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..16)
        .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i as u8; 4096]))))
        .collect();
    let request = http::Request::post("/sdk3/echo")
        .header("host", "example.test")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 16 * 4096);
    assert!(body[15 * 4096..].iter().all(|b| *b == b'p'));

    let r = super::post_as(&app, "/sdk3/json", "application/json", r#"{"name":"Ada"}"#).await;
    assert_eq!(r.json()["greeting"], "Hello, Ada!", "{}", r.text());
    super::post_as(&app, "/sdk3/json", "application/json", "{")
        .await
        .assert_error(400, "JSON");

    assert_eq!(
        call(&app, "GET", "/sdk3/count?key=k", "").await.text(),
        "1\n"
    );
    assert_eq!(
        call(&app, "GET", "/sdk3/count?key=k", "").await.text(),
        "2\n"
    );
    // An async route of the SDK's router.
    let r = call(&app, "GET", "/sdk3/routed/Ada", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "routed to Ada\n"));
    // The async key-value calls, on the same store.
    call(&app, "GET", "/sdk3/note?key=n1", "")
        .await
        .assert_error(404, "no note");
    let r = call(&app, "GET", "/sdk3/note?key=n1&text=hi", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    assert_eq!(
        call(&app, "GET", "/sdk3/note?key=n1", "").await.text(),
        "hi"
    );

    // Outbound, with the caller's trace; and a call to another function, in process.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let uri = format!("/sdk3/fetch?url=http://127.0.0.1:{}/", upstream.port());
    let r = super::call_with(&app, "GET", &uri, &[("traceparent", tp)], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(trace_id(&r.text()), trace_id(tp), "{}", r.text());
    let r = call(
        &app,
        "GET",
        "/sdk3/fetch?url=http://hello.wasmfn.internal/hello?name=Bo",
        "",
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, Bo!\n"));
    call(&app, "GET", "/sdk3/fetch?url=http://example.com/", "")
        .await
        .assert_error(500, "allowed_outbound_hosts");

    // Emitted to the sink with the request's trace.
    let r = super::call_with(
        &app,
        "GET",
        "/sdk3/emit?type=p3.note&tag=t1",
        &[("traceparent", tp)],
        "",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    {
        let got = received.lock().unwrap();
        let (ty, trace, data) = got.last().expect("the sink got the event");
        assert_eq!((ty.as_str(), data["tag"].as_str()), ("p3.note", Some("t1")));
        assert_eq!(trace_id(trace.as_deref().unwrap_or_default()), trace_id(tp));
    }

    // The event handler replies and emits.
    let r = super::send_event(&app, "p3.ping", serde_json::json!({ "n": 7 })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ce-type"), Some("p3.pong"));
    assert_eq!(r.json()["n"], 7);
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(ty, _, data)| ty == "p3.pinged" && data["n"] == 7),
        "p3.pinged was emitted"
    );

    // Interleaved: each request waits while the others run in the same instance, and its
    // event and outbound call carry its own trace. They start 10 ms apart, so that the
    // instance is idle in its event loop, with room, when the next arrives (a burst would
    // start an instance per request: each new one is assumed busy until it first waits).
    received.lock().unwrap().clear();
    let traces: Vec<String> = (0..8)
        .map(|i| format!("00-{:032x}-{:016x}-01", 0xabc000 + i, 0x100 + i))
        .collect();
    let calls = traces.iter().enumerate().map(|(i, tp)| {
        let app = app.clone();
        let uri = format!(
            "/sdk3/work?tag={i}&ms={}&url=http://127.0.0.1:{}/",
            100 - 10 * i,
            upstream.port()
        );
        let tp = tp.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            super::call_with(&app, "GET", &uri, &[("traceparent", &tp)], "").await
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            trace_id(&r.text()),
            trace_id(&traces[i]),
            "request {i}'s outbound call"
        );
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 8, "{got:?}");
    for (ty, trace, data) in &got {
        let i: usize = data["tag"].as_str().unwrap().parse().unwrap();
        assert_eq!(ty, "p3.work");
        assert_eq!(
            trace_id(trace.as_deref().unwrap_or_default()),
            trace_id(&traces[i]),
            "request {i}'s event"
        );
    }
    let metrics = app.metrics_text();
    let instantiated = metrics
        .lines()
        .find(|l| l.starts_with("wasmfn_instantiate_duration_seconds_count{function=\"sdk3\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        instantiated.ends_with(" 2"),
        "HTTP requests in one instance, events in another: {instantiated}"
    );

    // A trap fails its instance's requests, and the next request gets a fresh instance.
    call(&app, "GET", "/sdk3/trap", "")
        .await
        .assert_error(500, "trapped");
    assert_eq!(call(&app, "GET", "/sdk3/hello", "").await.status, 200);

    // Events, too, run several at once in one instance: they start 10 ms apart and each
    // waits until about the same time.
    let sends = (0..6u64).map(|i| {
        let app = app.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            super::send_event(&app, "p3.wait", serde_json::json!({ "ms": 100 - 10 * i })).await
        }
    });
    let mut peak = 0;
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ce-type"), Some("p3.waited"));
        peak = peak.max(r.json()["peak"].as_u64().unwrap());
    }
    assert!(peak >= 2, "events overlapped in one instance: peak {peak}");

    // A trap in one event fails the events its instance was running, and only those.
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            super::send_event(&app, "p3.wait", serde_json::json!({ "ms": 300 })).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let trapped = super::send_event(&app, "p3.trap", serde_json::json!({})).await;
    assert_eq!(trapped.status, 500, "{}", trapped.text());
    let mate = waiting.await.unwrap();
    assert_eq!(
        mate.status,
        500,
        "its instance-mate failed with it: {}",
        mate.text()
    );
    let r = super::send_event(&app, "p3.ping", serde_json::json!({ "n": 8 })).await;
    assert_eq!(
        (r.status, r.json()["n"].as_u64()),
        (200, Some(8)),
        "a fresh instance"
    );

    // An event past its deadline is 504, and its instance, stuck in it, is dropped; the
    // next event gets a fresh one.
    let slow = app_with_timeout("200ms");
    let r = super::send_event(&slow, "p3.wait", serde_json::json!({ "ms": 5000 })).await;
    assert_eq!(r.status, 504, "{}", r.text());
    let r = super::send_event(&slow, "p3.ping", serde_json::json!({ "n": 9 })).await;
    assert_eq!(
        (r.status, r.json()["n"].as_u64()),
        (200, Some(9)),
        "{}",
        r.text()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = slow.metrics_text();
    let live = metrics
        .lines()
        .find(|l| l.starts_with("wasmfn_instances_in_flight"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(live.ends_with(" 1"), "the stuck instance is gone: {live}");
}

/// hello-p3 taking `p3.wait` and `p3.ping` events within `timeout`.
fn app_with_timeout(timeout: &str) -> std::sync::Arc<App> {
    app(&entry(
        "slow",
        guests::HELLO_P3,
        &[],
        &format!(
            "timeout = \"{timeout}\"\nevents = [{{ type = \"p3.wait\" }}, {{ type = \"p3.ping\" }}]"
        ),
    ))
}
