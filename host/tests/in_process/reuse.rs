//! Instance reuse for WASI 0.2 functions: off unless the manifest asks, then one request at
//! a time per instance, through every 0.2 ABI (the one-call path, `wasi:http`, events),
//! within `max_requests` and `idle`; a trap retires the instance.

use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use wasmfn::server::App;
use wasmfn_guest_artifacts as guests;

use super::common::Reply;
use super::{app, call, common, entry, refused};

fn counted(r: &Reply) -> (u32, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    (
        r.header("x-served").unwrap().parse().unwrap(),
        r.header("x-instance").unwrap().to_string(),
    )
}

/// A request whose body has no known length, so it takes `wasi:http`, not the one call.
async fn streamed(app: &App, uri: &str) -> Reply {
    let body = StreamBody::new(futures_util::stream::iter([Ok::<
        _,
        std::convert::Infallible,
    >(Frame::data(
        bytes::Bytes::from_static(b"x"),
    ))]));
    let request = http::Request::post(uri)
        .header("host", "example.test")
        .body(body)
        .unwrap();
    let (parts, body) = app.handle(request).await.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes()).into()
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_instance_state() {
    // Without `reuse`, every request sees a fresh instance.
    let fresh = app(&entry(
        "state",
        guests::TEST_INSTANCE_STATE,
        &["/state/*"],
        "",
    ));
    for _ in 0..3 {
        assert_eq!(counted(&call(&fresh, "GET", "/state/a", "").await).0, 1);
    }

    let app = app(&entry(
        "state",
        guests::TEST_INSTANCE_STATE,
        &["/state/*"],
        "reuse = { max_requests = 4, idle = \"1h\" }\nevents = [{ type = \"count.me\" }]",
    ));
    // The one-call path, wasi:http and an event all run in the one instance, in turn.
    let (one, instance) = counted(&call(&app, "GET", "/state/a", "").await);
    let (two, same) = counted(&streamed(&app, "/state/b").await);
    assert_eq!((one, two), (1, 2));
    assert_eq!(instance, same);
    let event = super::events::send_event(&app, "count.me", serde_json::json!({})).await;
    assert_eq!(event.status, 200, "{}", event.text());
    assert_eq!(event.json()["served"], 3);
    assert_eq!(event.json()["instance"], instance.as_str());
    // max_requests = 4: the fifth is a new instance's first.
    assert_eq!(counted(&call(&app, "GET", "/state/a", "").await).0, 4);
    let (five, next) = counted(&call(&app, "GET", "/state/a", "").await);
    assert_eq!(five, 1);
    assert_ne!(next, instance);

    // A trap retires the instance: the next request gets a fresh one.
    assert_eq!(counted(&call(&app, "GET", "/state/a", "").await).0, 2);
    assert_eq!(call(&app, "GET", "/state/trap", "").await.status, 500);
    assert_eq!(counted(&call(&app, "GET", "/state/a", "").await).0, 1);

    // An instance idle past `idle` is gone (the wait is a lower bound: however slow the
    // machine, 900 ms is past an idle of 200 ms).
    let short = super::app(&entry(
        "state",
        guests::TEST_INSTANCE_STATE,
        &["/state/*"],
        "reuse = { max_requests = 4, idle = \"200ms\" }",
    ));
    assert_eq!(counted(&call(&short, "GET", "/state/a", "").await).0, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(counted(&call(&short, "GET", "/state/a", "").await).0, 1);

    // Many requests at once: every one is answered, and no instance serves more than its
    // max_requests (each count an instance gives is its own, and at most 4).
    let replies =
        futures_util::future::join_all((0..64).map(|_| call(&app, "GET", "/state/a", ""))).await;
    let mut served: std::collections::HashMap<String, Vec<u32>> = Default::default();
    for r in &replies {
        let (n, instance) = counted(r);
        served.entry(instance).or_default().push(n);
    }
    for counts in served.values_mut() {
        counts.sort();
        let distinct = counts.len();
        counts.dedup();
        assert_eq!(
            counts.len(),
            distinct,
            "an instance gave a count twice: {counts:?}"
        );
        assert!(counts.iter().all(|&n| n <= 4), "{counts:?}");
    }
    let metrics = call(&app, "GET", "/.well-known/wasmfn/metrics", "")
        .await
        .text();
    assert!(
        metrics.contains("wasmfn_instance_requests_count{function=\"state\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_2_function_cannot_serve_several_requests_at_once() {
    let err = refused(
        &entry(
            "state",
            guests::TEST_INSTANCE_STATE,
            &["/state"],
            "reuse = { max_concurrent = 4 }",
        ),
        Some(&common::cache_dir()),
    );
    assert!(err.starts_with("/virtual/wasmfn.toml:3:"), "{err}");
    assert!(
        err.contains(
            "`reuse.max_concurrent` is 4 but a WASI 0.2 instance serves one request at a time"
        ),
        "{err}"
    );
}
