//! CloudEvents through `App::handle`: the binding's three modes, replies, the saga's
//! functions one by one, several subscribers, and the in-process hop limit.

use wasmfn::engine::HOP_LIMIT;
use wasmfn::server::App;
use wasmfn_guest_artifacts as guests;

use super::{Reply, app, call_with, deep_app, entry, post_as};

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

pub(crate) async fn send_event(app: &App, ty: &str, data: serde_json::Value) -> Reply {
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

const SAGA_STORE: &str = "[key_value.saga]\ntype = \"memory\"\n\n";

fn order(id: &str, quantity: u32, amount_cents: u64) -> serde_json::Value {
    serde_json::json!({ "order_id": id, "item": "widget", "quantity": quantity, "amount_cents": amount_cents })
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn event_echo() {
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
    let r = post_as(
        &app,
        "/",
        "application/cloudevents+json; charset=utf-8",
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
    let r = post_as(
        &app,
        "/",
        "application/cloudevents-batch+json",
        batch.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let replies = r.json();
    assert_eq!(replies[0]["type"], "a.echo");
    assert_eq!(replies[1]["data"], serde_json::json!({"i": 2}));
    // An empty batch is valid and asks nothing.
    let r = post_as(&app, "/", "application/cloudevents-batch+json", "[]").await;
    assert_eq!(r.status, 202);

    // Malformed events are 400 with the reason; the request id comes along.
    let mut bad = binary_event("t", "1");
    bad.retain(|(k, _)| *k != "ce-source");
    let r = call_with(&app, "POST", "/", &bad, "{}").await;
    r.assert_error(400, "missing required attribute source");
    assert!(r.json()["request_id"].is_string());
    // An id with a control character in it (`%00`, percent-decoded) is not a CloudEvents
    // string.
    let nul = binary_event("t", "a%00b");
    let r = call_with(&app, "POST", "/", &nul, "{}").await;
    r.assert_error(400, "attribute id contains a control character (U+0000)");
    let r = post_as(&app, "/", "application/cloudevents+xml", "<e/>").await;
    assert_eq!(r.status, 415);
}

/// The same handler as an `async fn` (WASI 0.3) answers the same: the binding, the reply,
/// a batch; and its instance takes several events.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn event_echo_p3() {
    let app = app(&saga_entry("echo", guests::EVENT_ECHO_P3, "[{}]", ""));
    let mut headers = binary_event("order.created", "abc");
    headers.push(("ce-subject", "caf%C3%A9"));
    let r = call_with(&app, "POST", "/", &headers, r#"{"n":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ce-type"), Some("order.created.echo"));
    assert_eq!(r.header("ce-subject"), Some("caf%C3%A9"));
    let id = r.header("ce-id").unwrap();
    assert!(!id.is_empty() && id != "abc", "new id: {id}");
    assert_eq!(r.json(), serde_json::json!({"n": 1}));
    // A batch: every event answered, in order.
    let batch = serde_json::json!([
        { "specversion": "1.0", "id": "b1", "source": "/tests", "type": "a", "data": 1 },
        { "specversion": "1.0", "id": "b2", "source": "/tests", "type": "b", "data": 2 },
    ]);
    let r = post_as(
        &app,
        "/",
        "application/cloudevents-batch+json",
        batch.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..10 {
        let r = call_with(&app, "POST", "/", &headers, r#"{"n":2}"#).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let metrics = app.metrics_text();
    assert!(
        metrics.contains("wasmfn_instantiate_duration_seconds_count{function=\"echo\"} 1\n"),
        "one instance took them all: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn event_display() {
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
    r.assert_error(
        404,
        "no function subscribes to events of type \"payment.completed\"",
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn inventory_service() {
    let app = app(&format!(
        "{SAGA_STORE}{}",
        entry(
            "inventory",
            guests::INVENTORY_SERVICE,
            &["/inventory/*"],
            "events = [{ type = \"order.created\" }]\nkey_value_stores = [\"saga\"]\nvariables = { \"stock.widget\" = \"5\" }",
        )
    ));
    let r = send_event(&app, "order.created", order("o1", 2, 100)).await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("inventory.reserved"))
    );
    assert_eq!(r.header("ce-id"), Some("o1/inventory.reserved"));
    assert_eq!(r.header("ce-subject"), Some("o1"));
    // A redelivery gets the same reply and takes nothing more.
    let again = send_event(&app, "order.created", order("o1", 2, 100)).await;
    assert_eq!(again.header("ce-type"), Some("inventory.reserved"));
    let stock = call_with(&app, "GET", "/inventory/widget", &[], "")
        .await
        .json();
    assert_eq!(
        stock,
        serde_json::json!({"item": "widget", "stock": 5, "reserved": 2, "available": 3})
    );

    let r = send_event(&app, "order.created", order("o2", 4, 100)).await;
    assert_eq!(r.header("ce-type"), Some("inventory.failed"));
    let reason = r.json()["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("sold out: 3 of widget free, 4 ordered"),
        "{reason}"
    );
    let stock = call_with(&app, "GET", "/inventory/widget", &[], "")
        .await
        .json();
    assert_eq!(stock["available"], 3, "a failed reservation takes nothing");
    // Data that is not an order cannot succeed on retry: 422, so the broker dead-letters it.
    let r = send_event(&app, "order.created", serde_json::json!({"nope": true})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["function"], "inventory");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn payment_service() {
    let app = app(&entry(
        "payment",
        guests::PAYMENT_SERVICE,
        &[],
        "events = [{ type = \"inventory.reserved\" }]\nvariables = { limit_cents = \"1000\" }",
    ));
    let r = send_event(&app, "inventory.reserved", order("o1", 1, 999)).await;
    assert_eq!(r.header("ce-type"), Some("payment.completed"));
    let r = send_event(&app, "inventory.reserved", order("o2", 1, 5000)).await;
    assert_eq!(r.header("ce-type"), Some("payment.failed"));
    assert!(r.json()["reason"].as_str().unwrap().contains("declined"));
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn inventory_compensator() {
    let manifest = [
        SAGA_STORE.to_string(),
        entry(
            "inventory",
            guests::INVENTORY_SERVICE,
            &["/inventory/*"],
            "events = [{ type = \"order.created\" }]\nkey_value_stores = [\"saga\"]\nvariables = { \"stock.widget\" = \"5\" }",
        ),
        saga_entry(
            "compensator",
            guests::INVENTORY_COMPENSATOR,
            r#"[{ type = "payment.failed" }]"#,
            r#"key_value_stores = ["saga"]"#,
        ),
    ]
    .concat();
    let app = app(&manifest);
    send_event(&app, "order.created", order("o9", 2, 5000)).await;
    let available = || async {
        call_with(&app, "GET", "/inventory/widget", &[], "")
            .await
            .json()["available"]
            .clone()
    };
    assert_eq!(available().await, 3);
    // Released once, however often the broker delivers payment.failed.
    for _ in 0..2 {
        let r = send_event(&app, "payment.failed", order("o9", 2, 5000)).await;
        assert_eq!(r.header("ce-type"), Some("inventory.released"));
        assert_eq!(r.json()["order_id"], "o9");
        assert_eq!(available().await, 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn order_service() {
    // One component, both handlers: HTTP for new orders, events for the saga's outcome.
    let app = app(&format!(
        "{SAGA_STORE}{}",
        entry(
            "orders",
            guests::ORDER_SERVICE,
            &["/orders", "/orders/*"],
            r#"events = [{ type = "payment.completed" }, { type = "inventory.failed" }, { type = "inventory.released" }]
key_value_stores = ["saga"]"#,
        )
    ));
    // Without a sink, order.created is dispatched in-process; no one here subscribes.
    let r = post_as(
        &app,
        "/orders",
        "application/json",
        r#"{"item":"widget","quantity":1,"amount_cents":500}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let order_id = r.json()["order_id"].as_str().unwrap().to_string();
    assert!(order_id.starts_with("ord-"), "{order_id}");
    assert_eq!(r.json()["status"], "pending");
    let r = call_with(
        &app,
        "POST",
        "/orders",
        &[],
        r#"{"item":"widget","quantity":0,"amount_cents":1}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    // A client-chosen id placed twice is one order.
    for status in [202, 200] {
        let r = call_with(
            &app,
            "POST",
            "/orders",
            &[],
            r#"{"order_id":"o2","item":"widget","quantity":1,"amount_cents":500}"#,
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text());
    }

    let mut placed = order(&order_id, 1, 500);
    let r = send_event(&app, "payment.completed", placed.clone()).await;
    assert_eq!(r.header("ce-type"), Some("order.completed"));
    let r = call_with(&app, "GET", &format!("/orders/{order_id}"), &[], "").await;
    assert_eq!(r.json()["status"], "completed");
    // Closed is closed: a late or repeated outcome changes nothing.
    placed["reason"] = "payment of 500 cents declined".into();
    let r = send_event(&app, "inventory.released", placed).await;
    assert_eq!(
        r.header("ce-type"),
        Some("order.failed"),
        "the reply is deterministic"
    );
    let r = call_with(&app, "GET", &format!("/orders/{order_id}"), &[], "").await;
    assert_eq!(r.json()["status"], "completed");

    let r = send_event(&app, "inventory.released", order("o2", 1, 500)).await;
    assert_eq!(r.header("ce-type"), Some("order.failed"));
    assert_eq!(r.json()["status"], "compensated");
    // An outcome for an order that was never placed cannot succeed on retry.
    let r = send_event(&app, "payment.completed", order("nope", 1, 500)).await;
    assert_eq!(r.status, 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_subscribers_all_run_and_replies_are_emitted() {
    // Two functions match: both run, the response is 202, and replies go onward (here
    // in-process, to the payment service, whose own reply has no subscriber).
    let manifest = [
        SAGA_STORE.to_string(),
        saga_entry(
            "inventory",
            guests::INVENTORY_SERVICE,
            r#"[{ type = "order.created" }]"#,
            "variables = { \"stock.widget\" = \"5\" }\nkey_value_stores = [\"saga\"]",
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
    // Both subscribers ran once; inventory's reply reached payment; display, subscribed to
    // everything, saw the order, inventory's reply and payment's.
    assert_eq!(runs(&app, "inventory"), 1);
    assert_eq!(runs(&app, "payment"), 1);
    assert_eq!(runs(&app, "display"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_the_sink_refuses_fail_the_delivery_with_503() {
    // Two subscribers reply, so their replies go on to the sink, which refuses them for
    // good (400): the broker must redeliver rather than the replies being lost.
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = refusals.clone();
    let sink = super::common::serve_http(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { super::common::text_response(400, "no") }
    })
    .await;
    let manifest = [
        saga_entry("echo", guests::EVENT_ECHO, r#"[{ type = "ping" }]"#, ""),
        saga_entry(
            "counter",
            guests::TEST_INSTANCE_STATE,
            r#"[{ type = "ping" }]"#,
            "",
        ),
    ]
    .concat();
    let options = wasmfn::server::HostOptions {
        events: wasmfn::events::EventOptions::new(Some(&format!("http://{sink}/")), None).unwrap(),
        ..Default::default()
    };
    let app = wasmfn::testing::app_with(&manifest, &super::engine(None), options);
    let r = send_event(&app, "ping", serde_json::json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("could not be emitted"), "{}", r.text());
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    assert!(
        refusals.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the sink was asked"
    );
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
    let app = deep_app(&manifest);
    let r = send_event(&app, "ping", serde_json::json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("looks like a loop"), "{}", r.text());
    // The POSTed event, then one per hop: the HOP_LIMIT-th echo is delivered, the next is
    // refused. Calls between functions stop at the same depth (capabilities.rs).
    assert_eq!(runs(&app, "echo"), HOP_LIMIT as usize + 1);
    assert_eq!(runs(&app, "display"), HOP_LIMIT as usize + 1);
}

/// How many times function `name` handled an event, from the app's own metrics.
fn runs(app: &App, name: &str) -> usize {
    app.metrics()
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("wasmfn_events_total{") && l.contains(&format!("function=\"{name}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_run_in_the_host_in_their_order_without_a_broker() {
    let echo = |name: &str| entry(name, guests::EVENT_ECHO, &[], "");
    let manifest = [
        echo("first"),
        echo("second"),
        echo("third"),
        echo("branch-a"),
        echo("branch-b"),
        entry("holds-back", guests::EVENT_DISPLAY, &[], ""),
        echo("quiet-branch"),
        entry(
            "listener",
            guests::EVENT_DISPLAY,
            &[],
            "events = [{ type = \"quiet.start.echo\" }, { type = \"loud.start.echo\" }]",
        ),
        r#"
[[sequences]]
name = "pipeline"
steps = ["first", "second", "third"]
events = [{ type = "seq.start" }]

[[sequences]]
name = "stops-early"
steps = ["second", "holds-back", "third"]
events = [{ type = "stop.start" }]

[[parallels]]
name = "quiet"
branches = [{ subscriber = "quiet-branch" }]
reply = "none"
events = [{ type = "quiet.start" }]

[[parallels]]
name = "loud"
branches = [{ subscriber = "quiet-branch" }]
events = [{ type = "loud.start" }]

[[parallels]]
name = "fan-out"
branches = [{ subscriber = "branch-a" }, { filter = "holds-back", subscriber = "branch-b" }]
events = [{ type = "par.start" }]
"#
        .to_string(),
    ]
    .concat();
    let app = app(&manifest);

    // Each step gets the previous step's reply; the last reply is the answer.
    let r = send_event(&app, "seq.start", serde_json::json!({"n": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ce-type"), Some("seq.start.echo.echo.echo"));
    assert_eq!(r.json(), serde_json::json!({"n": 1}));

    // Every branch gets the event; a filter that replies with nothing holds it back.
    let r = send_event(&app, "par.start", serde_json::json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        (
            runs(&app, "branch-a"),
            runs(&app, "holds-back"),
            runs(&app, "branch-b")
        ),
        (1, 1, 0)
    );
    // Steps run through the flow only: on their own they subscribe to nothing.
    assert_eq!(runs(&app, "first"), 1);

    // A step that replies with nothing ends its sequence: no answer, no later step.
    let r = send_event(&app, "stop.start", serde_json::json!({})).await;
    assert_eq!((r.status, r.body.len()), (202, 0), "{}", r.text());
    assert_eq!((runs(&app, "second"), runs(&app, "third")), (2, 1));

    // A parallel's branch replies go on as events by default, and nowhere with
    // `reply = "none"`.
    let r = send_event(&app, "quiet.start", serde_json::json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!((runs(&app, "quiet-branch"), runs(&app, "listener")), (1, 0));
    let r = send_event(&app, "loud.start", serde_json::json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!((runs(&app, "quiet-branch"), runs(&app, "listener")), (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_events_request_over_16_mib_is_413_and_an_unreadable_one_400() {
    let app = app(&saga_entry("echo", guests::EVENT_ECHO, "[{}]", ""));
    let big = vec![b' '; wasmfn::events::MAX_EVENT_BODY + 1];
    let r = call_with(&app, "POST", "/", &binary_event("ping", "big"), big).await;
    r.assert_error(413, "at most 16777216 bytes");

    // A body that fails while it is read.
    let failing = futures_util::stream::iter([
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"{"))),
        Err(std::io::Error::other("the client went away")),
    ]);
    let mut request = http::Request::post("/").header("host", "example.test");
    for (name, value) in binary_event("ping", "cut") {
        request = request.header(name, value);
    }
    let request = request
        .body(http_body_util::StreamBody::new(failing))
        .unwrap();
    let r: Reply = wasmfn::testing::respond(&app, request).await.into();
    r.assert_error(400, "reading the request body failed");
}
