//! CloudEvents through the spawned `wasmfn` binary on a real socket, sent by a client that is
//! not ours (the official Rust SDK's reqwest binding), and the order saga end to end: once
//! dispatched inside the host, once through a real HTTP sink standing in for the broker.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cloudevents::binding::reqwest::{RequestBuilderExt, ResponseExt};
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Server, function, manifest};

fn event(ty: &str, id: &str, data: serde_json::Value) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("/tests/events")
        .ty(ty)
        .extension(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .data("application/json", data)
        .build()
        .unwrap()
}

/// An event's data as JSON, however the SDK chose to hold it (binary-mode bodies stay bytes).
fn data_json(e: &Event) -> serde_json::Value {
    match e.data().expect("event has data") {
        cloudevents::Data::Binary(b) => serde_json::from_slice(b).unwrap(),
        cloudevents::Data::String(s) => serde_json::from_str(s).unwrap(),
        cloudevents::Data::Json(v) => v.clone(),
    }
}

fn echo_server() -> (tempfile::TempDir, Server) {
    let (dir, path) = manifest(&function(
        "event-echo",
        guests::EVENT_ECHO,
        &[],
        "events = [{}]",
    ));
    let server = Server::start(&path);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_style_binary_delivery_gets_a_binary_reply() {
    let (_dir, server) = echo_server();
    let sent = event("com.example.ping", "b-1", json!({"n": 1}));
    let response = reqwest::Client::new()
        .post(server.url("/"))
        .header("Prefer", "reply")
        .event(sent.clone())
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("ce-id"), "binary reply");
    let reply = response.into_event().await.unwrap();
    assert_eq!(reply.ty(), "com.example.ping.echo");
    assert_ne!(reply.id(), sent.id());
    assert_eq!(reply.source(), sent.source());
    assert_eq!(reply.datacontenttype(), Some("application/json"));
    assert_eq!(data_json(&reply), json!({"n": 1}));
    assert_eq!(
        reply.extension("traceparent"),
        sent.extension("traceparent")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn structured_and_batched_deliveries_get_replies_in_the_same_mode() {
    let (_dir, server) = echo_server();
    let client = reqwest::Client::new();

    let sent = event("com.example.structured", "s-1", json!({"k": "v"}));
    let response = client
        .post(server.url("/"))
        .header("Prefer", "reply")
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(&sent).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/cloudevents+json"
    );
    let reply = response.into_event().await.unwrap();
    assert_eq!(reply.ty(), "com.example.structured.echo");
    assert_eq!(data_json(&reply), json!({"k": "v"}));

    let batch = vec![
        event("com.example.a", "a-1", json!(1)),
        event("com.example.b", "b-1", json!(2)),
    ];
    let response = client
        .post(server.url("/"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::to_vec(&batch).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replies: Vec<Event> = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let types: Vec<&str> = replies.iter().map(|e| e.ty()).collect();
    assert_eq!(types, ["com.example.a.echo", "com.example.b.echo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_events_get_400_with_the_reason() {
    let (_dir, server) = echo_server();
    let client = reqwest::Client::new();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 4] = [
        (
            &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")],
            "",
            "missing required attribute source",
        ),
        (
            &[
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "",
            "unsupported specversion",
        ),
        (
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-subject", "%E2%82"),
            ],
            "",
            "not valid UTF-8",
        ),
        (
            &[("content-type", "application/cloudevents+json")],
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x","data_base64":"eA=="}"#,
            "data_base64",
        ),
    ];
    for (headers, body, reason) in cases {
        let mut request = client.post(server.url("/")).body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{reason}");
        let body: serde_json::Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(reason), "{error:?} should say {reason:?}");
    }
}

const SAGA: &str = r#"
[key_value.saga]
type = "memory"

[[functions]]
name = "order-service"
component = "{order}"
routes = ["/orders", "/orders/*"]
events = [{ type = "payment.completed" }, { type = "inventory.failed" }, { type = "inventory.released" }]
key_value_stores = ["saga"]

[[functions]]
name = "inventory-service"
component = "{inventory}"
events = [{ type = "order.created" }]
variables = { "stock.widget" = "5" }
key_value_stores = ["saga"]

[[functions]]
name = "payment-service"
component = "{payment}"
events = [{ type = "inventory.reserved" }]
variables = { limit_cents = "1000" }

[[functions]]
name = "inventory-compensator"
component = "{compensator}"
events = [{ type = "payment.failed" }]
key_value_stores = ["saga"]
"#;

fn saga_manifest(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = SAGA
        .replace("{order}", guests::ORDER_SERVICE)
        .replace("{inventory}", guests::INVENTORY_SERVICE)
        .replace("{payment}", guests::PAYMENT_SERVICE)
        .replace("{compensator}", guests::INVENTORY_COMPENSATOR);
    manifest(&format!("{text}\n{extra}"))
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn place_order(server: &Server, id: &str, quantity: u32, amount_cents: u64) {
    let response = reqwest::Client::new()
        .post(server.url("/orders"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({ "order_id": id, "item": "widget", "quantity": quantity, "amount_cents": amount_cents }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn saga_runs_inside_the_host_without_a_sink() {
    // Without a sink, emitted events and replies are delivered to this host's subscribers;
    // event-display logs the saga's outcome events.
    let (_dir, path) = saga_manifest(&function(
        "event-display",
        guests::EVENT_DISPLAY,
        &[],
        r#"events = [{ type = "order.completed" }, { type = "order.failed" }]"#,
    ));
    let server = Server::start(&path);

    place_order(&server, "ok-1", 1, 500).await;
    let log = server.wait_for_log("subject: ok-1");
    assert!(log.contains("type: order.completed"), "{log}");

    // Payment is declined: the compensator releases the stock and the order fails.
    place_order(&server, "declined-1", 1, 5000).await;
    let log = server.wait_for_log("subject: declined-1");
    let line = log
        .lines()
        .find(|l| l.contains("subject: declined-1"))
        .unwrap();
    assert!(line.contains("type: order.failed"), "{line}");
    assert!(
        line.contains(r#"\"reason\":\"payment of 5000 cents declined"#),
        "{line}"
    );
}

/// A stand-in for a Knative Broker: accepts events POSTed to it (as the host's sink),
/// and delivers each to the host as a Trigger would, feeding replies back in.
struct Broker {
    addr: SocketAddr,
    received: Arc<Mutex<VecDeque<Event>>>,
}

impl Broker {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(VecDeque::new()));
        let queue = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let queue = queue.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let queue = queue.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                let h = |n: &str| {
                                    parts
                                        .headers
                                        .get(n)
                                        .map(|v| v.to_str().unwrap().to_string())
                                };
                                // The host emits in binary mode.
                                let mut b = EventBuilderV10::new()
                                    .id(h("ce-id").unwrap())
                                    .source(h("ce-source").unwrap())
                                    .ty(h("ce-type").unwrap());
                                if let Some(subject) = h("ce-subject") {
                                    b = b.subject(subject);
                                }
                                if let Some(tp) = h("traceparent") {
                                    b = b.extension("traceparent", tp);
                                }
                                // Extensions, as the binding carries them.
                                for (name, value) in &parts.headers {
                                    let Some(ext) = name.as_str().strip_prefix("ce-") else {
                                        continue;
                                    };
                                    if !["specversion", "id", "source", "type", "subject", "time"]
                                        .contains(&ext)
                                    {
                                        b = b.extension(ext, value.to_str().unwrap());
                                    }
                                }
                                let data: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap();
                                let e = b.data(h("content-type").unwrap(), data).build().unwrap();
                                queue.lock().unwrap().push_back(e);
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = http::StatusCode::ACCEPTED;
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// Delivers queued events to `host` until none are left; returns every event seen, in
    /// order, with the status of its delivery.
    async fn run(&self, host: &Server) -> Vec<(Event, u16)> {
        let client = reqwest::Client::new();
        let mut seen = Vec::new();
        loop {
            let next = self.received.lock().unwrap().pop_front();
            let Some(event) = next else {
                return seen;
            };
            let response = client
                .post(host.url("/"))
                .header("Prefer", "reply")
                .event(event.clone())
                .unwrap()
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status == 200 {
                let reply = response.into_event().await.unwrap();
                self.received.lock().unwrap().push_back(reply);
            }
            seen.push((event, status));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn saga_runs_through_a_broker_with_compensation() {
    let broker = Broker::start().await;
    let (_dir, path) = saga_manifest("");
    let sink = format!("http://{}/default/default", broker.addr);
    let server = Server::start_with(&path, &["--sink", &sink]);

    let flow = |seen: &[(Event, u16)], order: &str| -> Vec<(String, u16)> {
        seen.iter()
            .filter(|(e, _)| e.subject() == Some(order))
            .map(|(e, status)| (e.ty().to_string(), *status))
            .collect()
    };

    place_order(&server, "paid-1", 2, 900).await;
    let seen = broker.run(&server).await;
    assert_eq!(
        flow(&seen, "paid-1"),
        [
            ("order.created".to_string(), 200),
            ("inventory.reserved".to_string(), 200),
            ("payment.completed".to_string(), 200),
            // No Trigger in this host takes the outcome: 404, which a broker retries and
            // then dead-letters rather than dropping.
            ("order.completed".to_string(), 404),
        ]
    );
    // The trace context of the request that placed the order travels with every event.
    for (e, _) in &seen {
        assert_eq!(
            e.extension("traceparent").map(|v| v.to_string()).as_deref(),
            Some(TRACEPARENT),
            "{e}"
        );
    }

    place_order(&server, "declined-1", 1, 5000).await;
    let seen = broker.run(&server).await;
    let types: Vec<String> = flow(&seen, "declined-1")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "inventory.reserved",
            "payment.failed",
            "inventory.released",
            "order.failed"
        ]
    );

    place_order(&server, "sold-out-1", 50, 100).await;
    let seen = broker.run(&server).await;
    let types: Vec<String> = flow(&seen, "sold-out-1")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(types, ["order.created", "inventory.failed", "order.failed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_sink_fails_the_emitting_request_with_503() {
    // Reserve a port and close it, so nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_dir, path) = saga_manifest("");
    let sink = format!("http://{addr}/");
    let server = Server::start_with(&path, &["--sink", &sink]);
    let response = reqwest::Client::new()
        .post(server.url("/orders"))
        .json(&json!({ "order_id": "lost-1", "item": "widget", "quantity": 1, "amount_cents": 1 }))
        .send()
        .await
        .unwrap();
    // The order service's emit fails after bounded retries, and it says so rather than
    // claiming the order was accepted.
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("did not accept the event after 5 attempts"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_manifest_serves_the_examples_as_the_readme_says() {
    let root = std::path::Path::new(guests::GUESTS_DIR).join("../wasmfn.toml");
    // The embedded store in a directory of the test's own, not beside the repo's manifest.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(&root, &["--data-dir", data.path().to_str().unwrap()]);
    let client = reqwest::Client::new();
    let hello = client.get(server.url("/hello")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    // The WASI 0.3 component, twice in one instance.
    let mut served = Vec::new();
    for _ in 0..2 {
        let r = client.get(server.url("/p3/hello")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        served.push(r.headers()["x-served"].to_str().unwrap().to_string());
        assert_eq!(r.text().await.unwrap(), "Hello from WASI 0.3\n");
    }
    assert_eq!(served, ["1", "2"]);
    // The README's curl for event-echo.
    let ping = event("dev.wasmfn.ping", "readme-1", json!({"hi": 1}));
    let reply = client
        .post(server.url("/"))
        .event(ping)
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.into_event().await.unwrap().ty(),
        "dev.wasmfn.ping.echo"
    );
    // The README's order: completes, and event-display logs the outcome.
    let order = client
        .post(server.url("/orders"))
        .body(r#"{"item":"widget","quantity":1,"amount_cents":500}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 202);
    let log = server.wait_for_log("type: order.completed");
    assert!(log.contains("type: order.completed"), "{log}");

    // What a function can use: the README's counter, todo and outbound call.
    for n in ["1\n", "2\n"] {
        let r = client
            .post(server.url("/counter/visits"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), n);
    }
    let r = client
        .post(server.url("/todos"))
        .body(r#"{"title":"try wasmfn"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(server.url("/call?url=http://hello.wasmfn.internal/hello?name=Ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, Ada!\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_event_does_not_stop_the_rest_of_its_batch() {
    let broker = Broker::start().await;
    let (_dir, path) = saga_manifest("");
    let sink = format!("http://{}/", broker.addr);
    let server = Server::start_with(&path, &["--sink", &sink]);
    let batch = json!([
        { "specversion": "1.0", "id": "1", "source": "/t", "type": "order.created", "data": {"not": "an order"} },
        { "specversion": "1.0", "id": "2", "source": "/t", "type": "order.created",
          "data": { "order_id": "o2", "item": "widget", "quantity": 1, "amount_cents": 1 } },
    ]);
    let response = reqwest::Client::new()
        .post(server.url("/"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    // The rejection is reported (the broker dead-letters the batch) ...
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["event_id"], "1");
    // ... and the second event was still handled: its reply went to the sink.
    let received: Vec<Event> = broker.received.lock().unwrap().drain(..).collect();
    let types: Vec<(&str, Option<&str>)> = received.iter().map(|e| (e.ty(), e.subject())).collect();
    assert_eq!(types, [("inventory.reserved", Some("o2"))]);
}

/// Whether a rendered Trigger's filters admit an event with `attributes`, as the Broker
/// decides: `filters` (all must match; exact / prefix / suffix / all / any / not), else the
/// legacy `filter.attributes` (exact, `""` matches anything), else everything.
fn trigger_admits(spec: &serde_json::Value, attributes: &[(&str, &str)]) -> bool {
    fn attribute<'a>(attributes: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
        attributes.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
    fn admits(f: &serde_json::Value, attributes: &[(&str, &str)]) -> bool {
        let each = |key: &str, test: &dyn Fn(&str, &str) -> bool| {
            f[key].as_object().unwrap().iter().all(|(name, value)| {
                attribute(attributes, name).is_some_and(|a| test(a, value.as_str().unwrap()))
            })
        };
        if f.get("exact").is_some() {
            each("exact", &|a, v| a == v)
        } else if f.get("prefix").is_some() {
            each("prefix", &|a, v| a.starts_with(v))
        } else if f.get("suffix").is_some() {
            each("suffix", &|a, v| a.ends_with(v))
        } else if let Some(all) = f["all"].as_array() {
            all.iter().all(|f| admits(f, attributes))
        } else if let Some(any) = f["any"].as_array() {
            any.iter().any(|f| admits(f, attributes))
        } else if f.get("not").is_some() {
            !admits(&f["not"], attributes)
        } else {
            panic!("a filter this test does not know: {f}")
        }
    }
    if let Some(filters) = spec["filters"].as_array() {
        return filters.iter().all(|f| admits(f, attributes));
    }
    if let Some(exact) = spec["filter"]["attributes"].as_object() {
        return exact
            .iter()
            .all(|(name, value)| value == "" || attribute(attributes, name) == value.as_str());
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_delivering_per_trigger_runs_each_subscribed_function_once() {
    // `audit` has two subscriptions that both admit order.created, and `ledger` one more:
    // once, each Trigger of a matching function got it and the host ran every matching
    // function for each delivery (3 deliveries, 3 runs each).
    let text = format!(
        "{}{}{}",
        function(
            "audit",
            guests::EVENT_DISPLAY,
            &[],
            r#"events = [{ type = "order.created" }, { filters = [{ suffix = { type = ".created" } }] }]"#
        ),
        function(
            "ledger",
            guests::EVENT_DISPLAY,
            &[],
            r#"events = [{ filters = [{ prefix = { type = "order." } }] }]"#
        ),
        function(
            "payments",
            guests::EVENT_DISPLAY,
            &[],
            r#"events = [{ type = "payment.completed" }]"#
        ),
    );
    let (_dir, path) = manifest(&text);
    let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args([
            "deploy",
            "render",
            "--image",
            "registry.example/wasmfn:test",
            "--manifest",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let triggers: Vec<serde_json::Value> = String::from_utf8(rendered.stdout)
        .unwrap()
        .split("\n---\n")
        .filter_map(|doc| serde_norway::from_str::<Option<serde_json::Value>>(doc).unwrap())
        .filter(|doc| doc["kind"] == "Trigger")
        .collect();
    assert_eq!(triggers.len(), 3, "one Trigger per function");

    let server = Server::start(&path);
    let attributes = [
        ("type", "order.created"),
        ("source", "/tests/events"),
        ("id", "once-1"),
    ];
    let client = reqwest::Client::new();
    let mut deliveries = 0;
    for trigger in &triggers {
        if !trigger_admits(&trigger["spec"], &attributes) {
            continue;
        }
        deliveries += 1;
        let uri = trigger["spec"]["subscriber"]["uri"].as_str().unwrap();
        let response = client
            .post(server.url(uri))
            .event(event("order.created", "once-1", json!({"order_id": "o-1"})))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{uri}");
    }
    assert_eq!(deliveries, 2, "audit's and ledger's Triggers admit it");
    let runs = |log: &str, name: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("function=\"{name}\"")) && l.contains("event_id="))
            .count()
    };
    // Delivery lines may trail the 202s (and follow the guests' own output lines).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = server.log();
    while (runs(&log, "audit") == 0 || runs(&log, "ledger") == 0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        log = server.log();
    }
    let runs = |name: &str| runs(&log, name);
    assert_eq!(
        (runs("audit"), runs("ledger"), runs("payments")),
        (1, 1, 0),
        "{log}"
    );

    // The per-function path runs only its function, and refuses what is not an event.
    let r = common::post(&server.url("/.well-known/wasmfn/events/audit"), "{}").await;
    r.assert_error(400, "takes CloudEvents");
    let r = common::post(&server.url("/.well-known/wasmfn/events/nobody"), "{}").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_from_the_host_outside_knative() {
    // Every second (with seconds, which only the host fires): the function gets Knative's
    // ping event, with the schedule's name and data, tick after tick.
    let (_dir, path) = manifest(&function(
        "ticker",
        guests::EVENT_DISPLAY,
        &[],
        r#"schedules = [{ cron = "* * * * * *", name = "tick", data = { n = 1 } }]"#,
    ));
    let server = Server::start(&path);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let fired = loop {
        let log = server.log();
        let fired = log.matches("schedule fired").count();
        if fired >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(fired.matches("schedule fired").count() >= 2, "{fired}");
    // event-display prints what it got.
    assert!(fired.contains("type: dev.knative.sources.ping"), "{fired}");
    assert!(
        fired.contains("source: /apis/v1/namespaces/default/pingsources/ticker-tick"),
        "{fired}"
    );
    assert!(fired.contains("schedule: tick"), "{fired}");
    assert!(
        fired.contains(r#"{"n":1}"#) || fired.contains(r#"{\"n\":1}"#),
        "the schedule's data: {fired}"
    );

    // On Knative (K_SERVICE set) the PingSource delivers; the host does not fire.
    let knative = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("K_SERVICE", "wasmfn")],
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        !knative.log().contains("schedule fired"),
        "{}",
        knative.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_a_trace_starts_one_that_the_whole_saga_logs() {
    // No traceparent, no OTLP endpoint: the host starts a trace, and every step of the
    // saga the order causes logs its id. Events the guests emit without a time get one.
    let (_dir, path) = saga_manifest(&function(
        "display",
        guests::EVENT_DISPLAY,
        &[],
        r#"events = [{ type = "order.completed" }]"#,
    ));
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("WASMFN_LOG_FORMAT", "json")],
    );
    let response = reqwest::Client::new()
        .post(server.url("/orders"))
        .json(&json!({ "order_id": "traced-1", "item": "widget", "quantity": 1, "amount_cents": 500 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let log = server.wait_for_log("order.completed");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["path"] == "/orders")
        .expect("the order's request line");
    let trace = request["trace_id"].as_str().unwrap();
    assert_eq!(trace.len(), 32, "{request}");
    let steps: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "event")
        .map(|l| {
            assert_eq!(l["trace_id"], trace, "{l}");
            l["function"].as_str().unwrap()
        })
        .collect();
    for step in [
        "inventory-service",
        "payment-service",
        "order-service",
        "display",
    ] {
        assert!(steps.contains(&step), "{step} not in {steps:?}");
    }
    let shown = lines
        .iter()
        .find(|l| l["message"] == "guest output" && l["function"] == "display")
        .expect("event-display's output");
    assert!(
        shown["output"].as_str().unwrap().contains("time: 20"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn k_ce_overrides_are_set_on_every_emitted_event() {
    // What Knative's SinkBinding sets beside K_SINK: extensions for every event sent.
    let broker = Broker::start().await;
    let (_dir, path) = saga_manifest("");
    let sink = format!("http://{}/", broker.addr);
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0", "--sink", &sink],
        &[("K_CE_OVERRIDES", r#"{"extensions":{"tenant":"acme"}}"#)],
    );
    place_order(&server, "o-ext", 1, 100).await;
    let received: Vec<Event> = broker.received.lock().unwrap().drain(..).collect();
    assert!(!received.is_empty(), "the order service emitted nothing");
    for event in &received {
        assert_eq!(
            event.extension("tenant").map(|v| v.to_string()),
            Some("acme".to_string()),
            "{event}"
        );
    }
}
