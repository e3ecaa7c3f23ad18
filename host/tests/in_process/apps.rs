//! The seed's applications, one guest at a time, with memory stores: users-api,
//! campaigns-api (v1 and v2), notification-service against a webhook on loopback, the
//! event-sourced accounts (commands, projection, queries), the windowed aggregator and the
//! rule-driven event router. Their whole flows run against the spawned binary in
//! host/tests/apps.rs.

use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use wasmfn_guest_artifacts as guests;

use super::common::{serve_http, text_response};
use super::{Reply, app, call_with, entry, post_as};

fn stores(labels: &[&str]) -> String {
    labels
        .iter()
        .map(|l| format!("[key_value.{l}]\ntype = \"memory\"\n\n"))
        .collect()
}

async fn post(app: &wasmfn::server::App, uri: &str, body: Value) -> Reply {
    call_with(
        app,
        "POST",
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn get(app: &wasmfn::server::App, uri: &str) -> Reply {
    call_with(app, "GET", uri, &[], "").await
}

/// A binary-mode event of `ty` with JSON `data` (and `time`, when given) to `path`.
async fn event(
    app: &wasmfn::server::App,
    path: &str,
    ty: &str,
    id: &str,
    data: Value,
    time: Option<&str>,
) -> Reply {
    let mut headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/tests"),
        ("ce-type", ty),
        ("content-type", "application/json"),
    ];
    if let Some(time) = time {
        headers.push(("ce-time", time));
    }
    call_with(app, "POST", path, &headers, data.to_string()).await
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn users_api() {
    // Its users in the `default` SQLite database (PostgreSQL: tests/apps.rs).
    let data = tempfile::tempdir().unwrap();
    let options = wasmfn::server::HostOptions {
        capabilities: wasmfn::capabilities::CapabilityOptions {
            data_dir: Some(data.path().to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    };
    let app = wasmfn::testing::app_with(
        &entry(
            "users",
            guests::USERS_API,
            &["/users", "/users/*"],
            "sqlite_databases = [\"default\"]",
        ),
        &super::engine(Some(&super::common::cache_dir())),
        options,
    );
    let r = post(
        &app,
        "/users",
        json!({"email": "Ada@Example.com", "name": "Ada"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ada = r.json();
    assert_eq!(ada["email"], "ada@example.com");
    let id = ada["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("/users/{id}").as_str()));
    assert_eq!(get(&app, &format!("/users/{id}")).await.json(), ada);

    // The same address, however written: 409. Wrong fields: 422 naming them.
    let r = post(
        &app,
        "/users",
        json!({"email": "ada@example.com ", "name": "Imposter"}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    for (body, field) in [
        (json!({"email": "not-an-email", "name": "X"}), "email"),
        (json!({"email": "x@example.com", "name": " "}), "name"),
        (json!({"name": "X"}), "email"),
    ] {
        let r = post(&app, "/users", body).await;
        assert_eq!(
            (r.status, r.json()["field"].as_str()),
            (422, Some(field)),
            "{}",
            r.text()
        );
    }
    assert_eq!(get(&app, "/users/usr-999999").await.status, 404);

    // Changing the email frees the old one.
    let r = call_with(
        &app,
        "PUT",
        &format!("/users/{id}"),
        &[],
        json!({"email": "ada@lovelace.org"}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["email"].as_str()),
        (200, Some("ada@lovelace.org"))
    );
    let r = post(
        &app,
        "/users",
        json!({"email": "ada@example.com", "name": "Another Ada"}),
    )
    .await;
    assert_eq!(r.status, 201, "the old address is free again: {}", r.text());

    // Paging: 5 users, pages of 2.
    for i in 0..3 {
        post(
            &app,
            "/users",
            json!({"email": format!("u{i}@example.com"), "name": format!("U{i}")}),
        )
        .await;
    }
    let (mut seen, mut after) = (Vec::new(), String::new());
    loop {
        let page = get(&app, &format!("/users?limit=2&after={after}"))
            .await
            .json();
        for u in page["users"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert_eq!(get(&app, "/users?limit=0").await.status, 422);

    let r = call_with(&app, "DELETE", &format!("/users/{id}"), &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(get(&app, &format!("/users/{id}")).await.status, 404);
    assert_eq!(
        get(&app, "/users/health/ready").await.json()["status"],
        "ready"
    );
}

fn campaigns_manifest() -> String {
    stores(&["campaigns"])
        + &format!(
            "[[functions]]\nname = \"campaigns\"\nroutes = [\"/campaigns\", \"/campaigns/*\"]\nkey_value_stores = [\"campaigns\"]\n\
             versions = [{{ name = \"blue\", component = {v1:?}, weight = 100 }}, {{ name = \"green\", component = {v2:?}, weight = 0 }}]\n\n",
            v1 = guests::CAMPAIGNS_API,
            v2 = guests::CAMPAIGNS_API_V2
        )
        + &entry(
            "display",
            guests::EVENT_DISPLAY,
            &[],
            "events = [{ filters = [{ prefix = { type = \"campaign.\" } }] }]",
        )
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn campaigns_api() {
    let app = app(&campaigns_manifest());
    let r = post(&app, "/campaigns", json!({"name": "Spring sale"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.json(),
        json!({"id": id, "name": "Spring sale", "status": "draft", "api_version": "v1"})
    );
    // Launching a draft skips a step: 409, and nothing changes.
    let r = call_with(&app, "POST", &format!("/campaigns/{id}/launch"), &[], "").await;
    assert_eq!(r.status, 409, "{}", r.text());
    for (step, status) in [
        ("schedule", "scheduled"),
        ("launch", "active"),
        ("finish", "finished"),
    ] {
        let r = call_with(&app, "POST", &format!("/campaigns/{id}/{step}"), &[], "").await;
        assert_eq!(
            (r.status, r.json()["status"].as_str()),
            (200, Some(status)),
            "{}",
            r.text()
        );
    }
    // Each change was an event (event-display subscribes to campaign.*).
    let metrics = app.metrics().encode();
    for ty in [
        "campaign.scheduled",
        "campaign.launched",
        "campaign.finished",
    ] {
        assert!(
            metrics.contains(&format!("type=\"{ty}\"")),
            "{ty} not delivered:\n{metrics}"
        );
    }
    assert_eq!(
        post(&app, "/campaigns", json!({"name": ""})).await.status,
        422
    );
    let r = post(
        &app,
        "/campaigns",
        json!({"name": "x", "channels": ["fax"]}),
    )
    .await;
    assert_eq!(r.json()["field"], "channels");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn campaigns_api_v2() {
    let app = app(&campaigns_manifest());
    let green = [("x-wasmfn-version", "green")];
    let r = call_with(
        &app,
        "POST",
        "/campaigns",
        &green,
        json!({"name": "Launch", "channels": ["push"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    call_with(
        &app,
        "POST",
        &format!("/campaigns/{id}/schedule"),
        &green,
        "",
    )
    .await;
    // v2 shows the state, channels and history; v1 the same campaign its own way.
    let v2 = call_with(&app, "GET", &format!("/campaigns/{id}"), &green, "")
        .await
        .json();
    assert_eq!(v2["api_version"], "v2");
    assert_eq!(v2["state"], "scheduled");
    assert_eq!(v2["channels"], json!(["push"]));
    let states: Vec<&str> = v2["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["draft", "scheduled"]);
    let v1 = get(&app, &format!("/campaigns/{id}")).await.json();
    assert_eq!(
        v1,
        json!({"id": id, "name": "Launch", "status": "scheduled", "api_version": "v1"})
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn notification_service() {
    // A webhook that fails its first call with 503, then takes every notification.
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let calls = Arc::new(Mutex::new(0));
    let (r2, c2) = (received.clone(), calls.clone());
    let addr = serve_http(move |req: http::Request<Bytes>| {
        let (received, calls) = (r2.clone(), c2.clone());
        async move {
            let mut n = calls.lock().unwrap();
            *n += 1;
            if *n == 1 {
                return text_response(503, "busy");
            }
            received
                .lock()
                .unwrap()
                .push(serde_json::from_slice(req.body()).unwrap());
            text_response(200, "ok")
        }
    })
    .await;
    let app = notifier(
        guests::NOTIFICATION_SERVICE,
        "{ filters = [{ prefix = { type = \"order.\" } }] }",
        addr,
    );
    let order = json!({"order_id": "o-1", "item": "widget", "quantity": 1, "amount_cents": 5});
    // The webhook's 503 makes the delivery retryable; the redelivery notifies; the one after
    // that is a duplicate and notifies no one.
    let r = event(&app, "/", "order.completed", "n-1", order.clone(), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    for _ in 0..2 {
        let r = event(&app, "/", "order.completed", "n-1", order.clone(), None).await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event_id"], "n-1");
    assert_eq!(got[0]["text"], "Order o-1 is confirmed.");
    assert_eq!(got[0]["version"], "v3");
    assert_eq!(got[0]["data"]["item"], "widget");
}

/// A notification service (`component`) taking the events `subscription` admits, with its
/// webhook at `addr`.
fn notifier(
    component: &str,
    subscription: &str,
    addr: std::net::SocketAddr,
) -> std::sync::Arc<wasmfn::server::App> {
    app(&(stores(&["notifications"])
        + &entry(
            "notify",
            component,
            &[],
            &format!(
                "events = [{subscription}]\nkey_value_stores = [\"notifications\"]\n\
                 variables = {{ webhook_url = \"http://{addr}/hook\" }}\nallowed_outbound_hosts = [\"http://{addr}\"]"
            ),
        )))
}

/// What one version of the notification service posts to its webhook for one event.
async fn notified_by(component: &str) -> Value {
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let keep = received.clone();
    let addr = serve_http(move |req: http::Request<Bytes>| {
        let keep = keep.clone();
        async move {
            keep.lock()
                .unwrap()
                .push(serde_json::from_slice(req.body()).unwrap());
            text_response(200, "ok")
        }
    })
    .await;
    let app = notifier(component, "{ type = \"payment.failed\" }", addr);
    let data = json!({"order_id": "o-7", "reason": "card declined"});
    let r = event(&app, "/", "payment.failed", "p-7", data, None).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn notification_service_v2() {
    // v2's clients get the event's id and type with the text, not its data.
    assert_eq!(
        notified_by(guests::NOTIFICATION_SERVICE_V2).await,
        json!({
            "version": "v2",
            "event_id": "p-7",
            "type": "payment.failed",
            "text": "Payment for order o-7 was declined: card declined.",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn notification_service_v1() {
    // The legacy API: the message alone.
    assert_eq!(
        notified_by(guests::NOTIFICATION_SERVICE_V1).await,
        json!({ "version": "v1", "text": "Payment for order o-7 was declined: card declined." })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_batch_a_retry_fails_the_whole_batch_and_beats_a_rejection() {
    // Two notifiers: one whose webhook refuses for good (400: the handler rejects the
    // event), one whose webhook is busy (503: the handler asks for a retry).
    let refusing = serve_http(|_| async { text_response(400, "no") }).await;
    let busy = serve_http(|_| async { text_response(503, "busy") }).await;
    let notifier = |name: &str, ty: &str, addr: std::net::SocketAddr| {
        entry(
            name,
            guests::NOTIFICATION_SERVICE,
            &[],
            &format!(
                "events = [{{ type = \"{ty}\" }}, {{ type = \"order.both\" }}]\nkey_value_stores = [\"notifications\"]\n\
                 variables = {{ webhook_url = \"http://{addr}/hook\" }}\nallowed_outbound_hosts = [\"http://{addr}\"]"
            ),
        )
    };
    let app = app(&(stores(&["notifications"])
        + &notifier("refusing", "order.refused", refusing)
        + &notifier("busy", "order.busy", busy)));
    let order = json!({"order_id": "o-9", "item": "widget", "quantity": 1, "amount_cents": 5});
    let batch = |types: &[&str]| {
        let events: Vec<Value> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| json!({"specversion": "1.0", "id": format!("b-{i}-{ty}"), "source": "/tests", "type": ty, "data": order}))
            .collect();
        Value::Array(events).to_string()
    };
    let batched = "application/cloudevents-batch+json";
    // A rejection alone is the batch's answer: 422, for the broker to dead-letter.
    let r = post_as(&app, "/", batched, batch(&["order.refused"])).await;
    assert_eq!(r.status, 422, "{}", r.text());
    // A retryable failure anywhere fails the whole batch, rejections before it included:
    // the broker redelivers all of it.
    let r = post_as(&app, "/", batched, batch(&["order.refused", "order.busy"])).await;
    assert_eq!(r.status, 503, "{}", r.text());
    // One event both reject and retry: the retry wins.
    let r = post_as(&app, "/", batched, batch(&["order.both"])).await;
    assert_eq!(r.status, 503, "{}", r.text());
}

/// The event-sourcing apps, their event store the `default` SQLite database in `data`
/// (no `database_url`: PostgreSQL is tested on the spawned host, tests/apps.rs).
fn accounts_app(data: &std::path::Path) -> Arc<wasmfn::server::App> {
    let options = wasmfn::server::HostOptions {
        capabilities: wasmfn::capabilities::CapabilityOptions {
            data_dir: Some(data.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    };
    wasmfn::testing::app_with(
        &accounts_manifest(),
        &super::engine(Some(&super::common::cache_dir())),
        options,
    )
}

fn accounts_manifest() -> String {
    stores(&["accounts-view"])
        + &entry(
            "commands",
            guests::ACCOUNT_COMMANDS,
            &["/accounts", "/accounts/*"],
            "sqlite_databases = [\"default\"]",
        )
        + &entry(
            "projection",
            guests::ACCOUNT_PROJECTION,
            &["/projections/accounts/replay"],
            "events = [{ filters = [{ prefix = { type = \"account.event.\" } }] }]\nsqlite_databases = [\"default\"]\nkey_value_stores = [\"accounts-view\"]",
        )
        + &entry(
            "queries",
            guests::ACCOUNT_QUERIES,
            &["/balances", "/balances/*"],
            "key_value_stores = [\"accounts-view\"]",
        )
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn account_commands() {
    let data = tempfile::tempdir().unwrap();
    let app = accounts_app(data.path());
    assert_eq!(
        post(&app, "/accounts", json!({"account": "acc-1"}))
            .await
            .status,
        201
    );
    assert_eq!(
        post(&app, "/accounts", json!({"account": "acc-1"}))
            .await
            .status,
        409
    );
    let r = post(
        &app,
        "/accounts/acc-1/deposits",
        json!({"amount_cents": 500, "expected_version": 1}),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["event"]["version"].as_u64()),
        (201, Some(2)),
        "{}",
        r.text()
    );
    // A command that read version 1 is stale now.
    let r = post(
        &app,
        "/accounts/acc-1/withdrawals",
        json!({"amount_cents": 100, "expected_version": 1}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = post(
        &app,
        "/accounts/acc-1/withdrawals",
        json!({"amount_cents": 600}),
    )
    .await;
    assert_eq!(r.status, 422, "overdraft: {}", r.text());
    assert_eq!(
        post(&app, "/accounts/nope/deposits", json!({"amount_cents": 1}))
            .await
            .status,
        404
    );
    let stream = get(&app, "/accounts/acc-1/events").await.json();
    let kinds: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "deposited"]);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn account_projection() {
    let data = tempfile::tempdir().unwrap();
    let app = accounts_app(data.path());
    post(&app, "/accounts", json!({"account": "acc-2"})).await;
    post(
        &app,
        "/accounts/acc-2/deposits",
        json!({"amount_cents": 300}),
    )
    .await;
    // Redelivered and out-of-order events leave the read model as the stream says.
    let recorded = get(&app, "/accounts/acc-2/events").await.json()["events"].clone();
    let deposit = recorded[1].clone();
    let r = event(
        &app,
        "/",
        "account.event.deposited",
        "acc-2/2",
        deposit,
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        get(&app, "/balances/acc-2").await.json()["balance_cents"],
        300
    );
    let live = get(&app, "/balances").await.json();
    let r = post(&app, "/projections/accounts/replay", json!({})).await;
    assert_eq!(r.json(), json!({"accounts": 1, "events": 2}));
    assert_eq!(
        get(&app, "/balances").await.json(),
        live,
        "the replayed model is the live one"
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn account_queries() {
    let data = tempfile::tempdir().unwrap();
    let app = accounts_app(data.path());
    assert_eq!(get(&app, "/balances/none").await.status, 404);
    post(&app, "/accounts", json!({"account": "acc-3"})).await;
    post(
        &app,
        "/accounts/acc-3/deposits",
        json!({"amount_cents": 70}),
    )
    .await;
    post(
        &app,
        "/accounts/acc-3/withdrawals",
        json!({"amount_cents": 20}),
    )
    .await;
    assert_eq!(
        get(&app, "/balances/acc-3").await.json(),
        json!({"account": "acc-3", "balance_cents": 50, "version": 3})
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn metrics_aggregator() {
    // Windows of an hour: the test's events all fall in the current one and are counted;
    // an event for a window that has closed, or a negative value, is refused. Windows
    // closed by the schedule's ping are tested in the spawned host (apps.rs, with a
    // per-second schedule).
    let Some(redis) = super::common::RedisServer::start() else {
        return;
    };
    let app = app(&entry(
        "aggregator",
        guests::METRICS_AGGREGATOR,
        &[],
        &format!(
            "events = [{{ type = \"metric.recorded\" }}]\nallowed_outbound_hosts = [\"{url}\"]\nvariables = {{ window_seconds = \"3600\", grace_seconds = \"0\", redis_url = \"{url}\" }}",
            url = redis.url()
        ),
    ));
    for (i, value) in [1.5, 2.25, 3.0].iter().enumerate() {
        let r = event(
            &app,
            "/",
            "metric.recorded",
            &format!("m-{i}"),
            json!({"key": "cpu", "value": value}),
            None,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // The window is a Redis hash, as the seed keeps it, expiring on its own.
    let mut native = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("aggregator:window:*:cpu")
        .query_async(&mut native)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(&keys[0])
        .query_async(&mut native)
        .await
        .unwrap();
    assert_eq!(fields["count"], "3");
    assert_eq!(fields["sum"], "6.75");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut native)
        .await
        .unwrap();
    assert!(ttl > 3600, "{ttl}");
    let r = event(
        &app,
        "/",
        "metric.recorded",
        "late",
        json!({"key": "cpu", "value": 1}),
        Some("2020-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("has closed"), "{}", r.text());
    let r = event(
        &app,
        "/",
        "metric.recorded",
        "neg",
        json!({"value": -1}),
        None,
    )
    .await;
    assert_eq!(r.status, 422);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn event_router() {
    let rules = json!({"rules": [
        {"match": {"type": "order.*", "source": "legacy-system"},
         "transform": {"type": "order.v2", "add_fields": {"schema_version": "2.0"}, "remove_fields": ["internal"]}},
        {"match": {"type": "debug.*"}, "drop": true},
        {"match": {"type": "audit.*"}, "transform": {"type": "audit.routed"}},
        {"match": {"type": "payment.*"}, "require": ["order_id", "amount_cents"]},
    ]})
    .to_string();
    let app = app(&entry(
        "router",
        guests::EVENT_ROUTER,
        &[],
        &format!("events = [{{}}]\nvariables = {{ rules = {:?} }}", rules),
    ));
    let legacy = |ty: &str, source: &str, data: Value| {
        let body = data.to_string();
        let (ty, source) = (ty.to_string(), source.to_string());
        let app = app.clone();
        async move {
            call_with(
                &app,
                "POST",
                "/",
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "e-1"),
                    ("ce-source", &source),
                    ("ce-type", &ty),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let r = legacy(
        "order.created",
        "legacy-system",
        json!({"id": 7, "internal": true}),
    )
    .await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("order.v2")),
        "{}",
        r.text()
    );
    assert_eq!(r.header("ce-originaltype"), Some("order.created"));
    assert_eq!(r.json(), json!({"id": 7, "schema_version": "2.0"}));
    // The same type from another source: no rule, dropped (202, no reply).
    let r = legacy("order.created", "web", json!({})).await;
    assert_eq!((r.status, r.header("ce-type")), (202, None));
    let r = legacy("debug.trace", "x", json!({})).await;
    assert_eq!((r.status, r.header("ce-type")), (202, None));
    let r = legacy("audit.login", "x", json!({"user": "ada"})).await;
    assert_eq!(
        (r.header("ce-type"), r.json()),
        (Some("audit.routed"), json!({"user": "ada"}))
    );
    // A validator: the event passes unchanged when its data has the fields, else it is
    // dropped (a null field is not set).
    let valid = json!({"order_id": "o-1", "amount_cents": 5});
    let r = legacy("payment.requested", "web", valid.clone()).await;
    assert_eq!(
        (r.status, r.header("ce-type"), r.header("ce-id")),
        (200, Some("payment.requested"), Some("e-1")),
        "{}",
        r.text()
    );
    assert_eq!(r.json(), valid);
    for data in [
        json!({"order_id": "o-1"}),
        json!({"order_id": "o-1", "amount_cents": null}),
        json!("text"),
    ] {
        let r = legacy("payment.requested", "web", data.clone()).await;
        assert_eq!((r.status, r.header("ce-type")), (202, None), "{data}");
    }
}
