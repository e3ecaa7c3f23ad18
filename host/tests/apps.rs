//! The seed's applications end to end, through the spawned `wasmfn` and the manifests that
//! ship them (`deploy/seed-apis.toml`, `deploy/patterns.toml`, the root `wasmfn.toml`),
//! with their state in a real `redis-server` and PostgreSQL where the manifest keeps it there (skipped,
//! saying so, without one): users-api (two hosts, one PostgreSQL), the stateful saga, event
//! sourcing with CQRS and replay (of the read model, and of the store's events to a Broker
//! by `wasmfn replay`), windowed aggregation, rule-driven routing, the validate → enrich →
//! transform Sequence (and the event lag it is measured by), notifications to a webhook,
//! and campaigns switched from blue to green.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use wasmfn_guest_artifacts as guests;

mod common;
use common::{
    PostgresServer, RedisServer, Reply, Server, client, get, post, serve_http, text_response,
};

fn repo() -> PathBuf {
    Path::new(guests::GUESTS_DIR)
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `wasmfn serve` of `manifest` (only `functions`), its Redis stores on `redis`.
fn serve(manifest: &Path, functions: &str, redis: &RedisServer, extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--functions", functions];
    args.extend_from_slice(extra);
    Server::spawn(manifest, &args, &[("REDIS_URL", &redis.url())])
}

async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut request = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    common::send(
        &client(false),
        request.body(Full::new(body.into())).unwrap(),
    )
    .await
}

/// Polls `url` until `done` says yes.
async fn eventually(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = get(url).await;
        if reply.status == 200 && done(&reply.json()) {
            return reply.json();
        }
        assert!(
            Instant::now() < deadline,
            "{url} never got there: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_api_on_postgres_keeps_emails_unique_across_two_hosts() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let manifest = repo().join("deploy/seed-apis.toml");
    let host = || {
        Server::spawn(
            &manifest,
            &["--listen", "127.0.0.1:0", "--functions", "users"],
            &[("DATABASE_URL", &pg.url())],
        )
    };
    let (a, b) = (host(), host());

    let r = post(
        &a.url("/users"),
        r#"{"email":"ada@example.com","name":"Ada Lovelace"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // The other pod sees the user, and the address is taken there too.
    assert_eq!(
        get(&b.url(&format!("/users/{id}"))).await.json()["name"],
        "Ada Lovelace"
    );
    let r = post(
        &b.url("/users"),
        r#"{"email":"ADA@example.com","name":"Other"}"#,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    // Twenty registrations of one new address, racing on both hosts: exactly one wins.
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url("/users")
            } else {
                b.url("/users")
            };
            tokio::spawn(async move {
                post(
                    &url,
                    format!(r#"{{"email":"grace@example.com","name":"G{i}"}}"#),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 409),
        "{statuses:?}"
    );

    let r = post(&a.url("/users"), r#"{"email":"x@example.com","name":""}"#).await;
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("name")));
    let r = send(
        "PUT",
        &b.url(&format!("/users/{id}")),
        &[],
        r#"{"name":"Ada King"}"#,
    )
    .await;
    assert_eq!(r.json()["name"], "Ada King");
    let page = get(&a.url("/users?limit=1")).await.json();
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_string(), "{page}");
    assert_eq!(
        send("DELETE", &a.url(&format!("/users/{id}")), &[], "")
            .await
            .status,
        204
    );
    assert_eq!(get(&b.url(&format!("/users/{id}"))).await.status, 404);
    assert_eq!(
        get(&a.url("/users/health/ready")).await.json()["status"],
        "ready"
    );

    // The unique email is the table's constraint, read with a native client.
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM users WHERE email = 'grace@example.com'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

const SAGA: &str = "order-service,inventory-service,payment-service,inventory-compensator";

#[tokio::test(flavor = "multi_thread")]
async fn the_saga_keeps_its_state_in_redis_and_compensates() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = serve(&repo().join("deploy/patterns.toml"), SAGA, &redis, &[]);
    let order = |quantity: u32, amount: u64| {
        format!(r#"{{"item":"widget","quantity":{quantity},"amount_cents":{amount}}}"#)
    };

    let r = post(&server.url("/orders"), order(2, 500)).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (202, Some("pending")),
        "{}",
        r.text()
    );
    let id = r.json()["order_id"].as_str().unwrap().to_string();
    eventually(&server.url(&format!("/orders/{id}")), |o| {
        o["status"] == "completed"
    })
    .await;
    assert_eq!(
        get(&server.url("/inventory/widget")).await.json()["available"],
        8
    );

    // Declined: the stock taken comes back.
    let r = post(&server.url("/orders"), order(3, 500_000)).await;
    let declined = r.json()["order_id"].as_str().unwrap().to_string();
    let o = eventually(&server.url(&format!("/orders/{declined}")), |o| {
        o["status"] != "pending"
    })
    .await;
    assert_eq!(o["status"], "compensated", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("declined"), "{o}");
    assert_eq!(
        get(&server.url("/inventory/widget")).await.json()["available"],
        8
    );

    // More than is free: failed cleanly, nothing taken.
    let r = post(&server.url("/orders"), order(9, 500)).await;
    let sold_out = r.json()["order_id"].as_str().unwrap().to_string();
    let o = eventually(&server.url(&format!("/orders/{sold_out}")), |o| {
        o["status"] != "pending"
    })
    .await;
    assert_eq!(o["status"], "failed", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("sold out"), "{o}");
    assert_eq!(
        get(&server.url("/inventory/widget")).await.json()["available"],
        8
    );

    // The broker redelivers order.created for the first order: same reply, no more taken.
    let created = json!({"order_id": id, "item": "widget", "quantity": 2, "amount_cents": 500});
    let r = send(
        "POST",
        &server.url("/.well-known/wasmfn/events/inventory-service"),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", &format!("{id}/order.created")),
            ("ce-source", "/saga/order-service"),
            ("ce-type", "order.created"),
            ("content-type", "application/json"),
        ],
        created.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("inventory.reserved")),
        "{}",
        r.text()
    );
    assert_eq!(
        get(&server.url("/inventory/widget")).await.json()["available"],
        8
    );
    assert_eq!(
        get(&server.url(&format!("/orders/{id}"))).await.json()["status"],
        "completed"
    );

    // A placement that died after writing the order and before starting its saga: while
    // its claim may be live the client's retry is asked to come back; once it has lapsed
    // (two 60 s slots old), the retry places the order and the saga runs.
    let mut dead = DeadHost::on(&redis);
    let pending = json!({"order_id": "ord-ghost", "item": "widget", "quantity": 1,
        "amount_cents": 500, "status": "pending"});
    dead.run(&["SET", "wasmfn:saga:order:ord-ghost", &pending.to_string()]);
    dead.hold("wasmfn:saga:order:ord-ghost");
    let ghost = r#"{"order_id":"ord-ghost","item":"widget","quantity":1,"amount_cents":500}"#;
    let r = post(&server.url("/orders"), ghost).await;
    assert_eq!(r.status, 503, "{}", r.text());
    dead.lapse("wasmfn:saga:order:ord-ghost");
    let r = post(&server.url("/orders"), ghost).await;
    assert_eq!(r.status, 202, "{}", r.text());
    eventually(&server.url("/orders/ord-ghost"), |o| {
        o["status"] == "completed"
    })
    .await;
    let r = post(&server.url("/orders"), ghost).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("completed")),
        "placed once"
    );
    // Each saga closed once, redeliveries and retries included.
    assert_eq!(
        get(&server.url("/orders")).await.json(),
        json!({"completed": 2, "failed": 1, "compensated": 1, "closed": 4})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_sourcing_refuses_stale_appends_and_replay_rebuilds_the_live_model() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let server = Server::spawn(
        &repo().join("deploy/patterns.toml"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--functions",
            "command-service,projection-builder,query-service",
        ],
        &[("REDIS_URL", &redis.url()), ("DATABASE_URL", &pg.url())],
    );
    for account in ["acc-a", "acc-b"] {
        let r = post(
            &server.url("/accounts"),
            format!(r#"{{"account":"{account}"}}"#),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for (account, amount) in [("acc-a", 1000), ("acc-b", 250), ("acc-a", 500)] {
        let r = post(
            &server.url(&format!("/accounts/{account}/deposits")),
            format!(r#"{{"amount_cents":{amount}}}"#),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Ten withdrawals that all read version 3 of acc-a: one is appended, nine are stale.
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let url = server.url("/accounts/acc-a/withdrawals");
            tokio::spawn(async move {
                post(&url, r#"{"amount_cents":100,"expected_version":3}"#)
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        9,
        "{statuses:?}"
    );

    let a = eventually(&server.url("/balances/acc-a"), |a| a["version"] == 4).await;
    assert_eq!(a["balance_cents"], 1400);
    eventually(&server.url("/balances/acc-b"), |b| b["version"] == 2).await;
    let live = get(&server.url("/balances")).await.json();
    let r = post(&server.url("/projections/accounts/replay"), "").await;
    assert_eq!(
        r.json(),
        json!({"accounts": 2, "events": 6}),
        "{}",
        r.text()
    );
    assert_eq!(
        get(&server.url("/balances")).await.json(),
        live,
        "the rebuilt model is the live one"
    );
    let stream = get(&server.url("/accounts/acc-a/events")).await.json();
    assert_eq!(stream["events"].as_array().unwrap().len(), 4);

    // A deposit after the race goes on from the version the database holds.
    let r = post(
        &server.url("/accounts/acc-b/deposits"),
        r#"{"amount_cents":5}"#,
    )
    .await;
    assert_eq!(
        (r.status, &r.json()["event"]["version"]),
        (201, &json!(3)),
        "{}",
        r.text()
    );
    // The event store is the seed's `events` table, read with a native client.
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT version, event_type FROM events WHERE aggregate_id = 'acc-b' ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let stream: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stream,
        [
            (1, "opened".to_string()),
            (2, "deposited".to_string()),
            (3, "deposited".to_string())
        ]
    );
}

/// What a host that died mid-way leaves in a test's Redis: keys written as it wrote them,
/// and the claims `wasmfn_sdk::kv::Store::claim` takes, in the guests' 60 s lease slots.
struct DeadHost {
    redis: ::redis::Connection,
    slot: u64,
}

impl DeadHost {
    fn on(redis: &RedisServer) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        DeadHost {
            redis: ::redis::Client::open(redis.url())
                .unwrap()
                .get_connection()
                .unwrap(),
            slot: now.as_secs() / 60,
        }
    }

    /// One Redis command.
    fn run(&mut self, args: &[&str]) {
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: () = cmd.query(&mut self.redis).unwrap();
    }

    /// `name` claimed now, as by a holder that may still be running.
    fn hold(&mut self, name: &str) {
        self.run(&["SET", &format!("{name}:claim:{}", self.slot), "1"]);
    }

    /// The claim on `name` moved two slots back: its holder is long gone.
    fn lapse(&mut self, name: &str) {
        self.run(&["DEL", &format!("{name}:claim:{}", self.slot)]);
        self.run(&["SET", &format!("{name}:claim:{}", self.slot - 2), "1"]);
    }
}

/// A stand-in broker that keeps what the host sends its sink.
async fn sink() -> (String, Arc<Mutex<VecDeque<Value>>>) {
    let received = Arc::new(Mutex::new(VecDeque::new()));
    let keep = received.clone();
    let addr = serve_http(move |req: http::Request<Bytes>| {
        let keep = keep.clone();
        async move {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let data: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
            keep.lock()
                .unwrap()
                .push_back(json!({"type": header("ce-type"), "id": header("ce-id"), "data": data}));
            text_response(202, "")
        }
    })
    .await;
    (format!("http://{addr}/"), received)
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_of_metrics_are_aggregated_in_redis_and_closed_by_the_schedule() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The shipped manifest's aggregator with two-second windows, closed every second once
    // three seconds past their end.
    let text = std::fs::read_to_string(repo().join("deploy/patterns.toml"))
        .unwrap()
        .replace(
            r#"schedules = [{ cron = "* * * * *", name = "close-windows" }]"#,
            r#"schedules = [{ cron = "* * * * * *", name = "close-windows" }]"#,
        )
        .replace(
            r#"variables = { window_seconds = "60", grace_seconds = "5", redis_url"#,
            r#"variables = { window_seconds = "2", grace_seconds = "3", redis_url"#,
        )
        .replace("../guests/", &format!("{}/", guests::GUESTS_DIR));
    let (_dir, manifest) = common::manifest(&text);
    let (sink_url, received) = sink().await;
    let server = serve(
        &manifest,
        "event-aggregator",
        &redis,
        &["--sink", &sink_url, "--schedules", "on"],
    );
    // All in one window, however long sending takes: each event says when it happened,
    // the same instant for all (the window closes three seconds after it ends).
    let time = chrono::Utc::now().to_rfc3339();
    let metric = |id: String, key: &str, value: f64| {
        let url = server.url("/.well-known/wasmfn/events/event-aggregator");
        let body = json!({"key": key, "value": value}).to_string();
        let time = time.clone();
        async move {
            send(
                "POST",
                &url,
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", &id),
                    ("ce-source", "/tests"),
                    ("ce-type", "metric.recorded"),
                    ("ce-time", &time),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    for (i, (key, value)) in [
        ("cpu", 0.5),
        ("cpu", 0.25),
        ("cpu", 1.0),
        ("mem", 64.0),
        ("mem", 32.0),
    ]
    .iter()
    .enumerate()
    {
        let r = metric(format!("m-{i}"), key, *value).await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let aggregates = loop {
        let got: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "metric.recorded.aggregated")
            .cloned()
            .collect();
        if got.len() >= 2 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |key: &str| {
        aggregates
            .iter()
            .find(|a| a["data"]["key"] == key)
            .unwrap_or_else(|| panic!("no aggregate for {key}: {aggregates:?}\n{}", server.log()))
    };
    assert_eq!(
        (
            of("cpu")["data"]["count"].as_u64(),
            of("cpu")["data"]["sum"].as_f64()
        ),
        (Some(3), Some(1.75))
    );
    assert_eq!(
        (
            of("mem")["data"]["count"].as_u64(),
            of("mem")["data"]["sum"].as_f64()
        ),
        (Some(2), Some(96.0))
    );
    assert_eq!(
        aggregates.len(),
        2,
        "one aggregate per key and window: {aggregates:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_filter_routes_drops_and_reshapes_by_its_rules() {
    // The filter keeps no state: no store, so no Redis.
    let server = Server::spawn(
        &repo().join("deploy/patterns.toml"),
        &["--listen", "127.0.0.1:0", "--functions", "event-filter"],
        &[],
    );
    let deliver = |ty: &str, source: &str, data: Value| {
        let url = server.url("/.well-known/wasmfn/events/event-filter");
        let (ty, source) = (ty.to_string(), source.to_string());
        async move {
            send(
                "POST",
                &url,
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "e-1"),
                    ("ce-source", &source),
                    ("ce-type", &ty),
                    ("content-type", "application/json"),
                ],
                data.to_string(),
            )
            .await
        }
    };
    let r = deliver("order.created", "legacy-system", json!({"order_id": "o-1"})).await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("order.v2")),
        "{}",
        r.text()
    );
    assert_eq!(
        r.json(),
        json!({"order_id": "o-1", "schema_version": "2.0"})
    );
    let r = deliver("debug.trace", "anywhere", json!({})).await;
    assert_eq!((r.status, r.header("ce-type")), (202, None), "dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_order_pipeline_validates_enriches_and_transforms_and_its_lag_is_measured() {
    // The Sequence's three steps in one host, which runs the Sequence itself (no Broker):
    // the last step's reply is the answer to the event.
    let server = Server::spawn(
        &repo().join("deploy/patterns.toml"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--functions",
            "order-validator,order-enricher,order-transformer",
        ],
        &[],
    );
    let submit = |id: &str, data: Value, time: Option<String>| {
        let url = server.url("/");
        let id = id.to_string();
        async move {
            let mut headers = vec![
                ("ce-specversion", "1.0"),
                ("ce-id", id.as_str()),
                ("ce-source", "/web"),
                ("ce-type", "order.submitted"),
                ("content-type", "application/json"),
            ];
            if let Some(t) = &time {
                headers.push(("ce-time", t));
            }
            send("POST", &url, &headers, data.to_string()).await
        }
    };
    // Submitted 40 s ago: it waited somewhere before reaching the pipeline.
    let late = (chrono::Utc::now() - chrono::Duration::seconds(40)).to_rfc3339();
    let r = submit(
        "o-1",
        json!({"order_id": "o-1", "amount_cents": 500, "internal": "x"}),
        Some(late),
    )
    .await;
    assert_eq!(
        (r.status, r.header("ce-type")),
        (200, Some("order.accepted")),
        "{}\n{}",
        r.text(),
        server.log()
    );
    assert_eq!(
        r.json(),
        json!({"order_id": "o-1", "amount_cents": 500, "channel": "web", "schema_version": "2.0"}),
        "validated, enriched, transformed"
    );
    // Without an amount the validator holds it back: nothing comes out.
    let r = submit("o-2", json!({"order_id": "o-2"}), None).await;
    assert_eq!((r.status, r.header("ce-type")), (202, None), "{}", r.text());
    // On time, a second event: the lag histogram has one late and one prompt event.
    let now = chrono::Utc::now().to_rfc3339();
    let r = submit(
        "o-3",
        json!({"order_id": "o-3", "amount_cents": 1}),
        Some(now),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let metrics = get(&server.url("/.well-known/wasmfn/metrics")).await.text();
    let bucket = |le: &str| -> f64 {
        let prefix =
            format!("wasmfn_event_lag_seconds_bucket{{le=\"{le}\",function=\"order-validator\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}in\n{metrics}"))
            .parse()
            .unwrap()
    };
    // Buckets double from 1 ms: 32.768 s holds the prompt one only, 65.536 s both.
    assert_eq!(bucket("1.024"), 1.0, "{metrics}");
    assert_eq!(bucket("32.768"), 1.0, "{metrics}");
    assert_eq!(bucket("65.536"), 2.0, "{metrics}");
    // The event without a time is not counted.
    assert_eq!(bucket("+Inf"), 2.0, "{metrics}");
}

/// `wasmfn replay` of `store`'s events from `start` to `end` (of `aggregate`), as the Job
/// runs it, to a stand-in broker: what the broker got, and what the command said.
async fn replay(
    store: &str,
    start: &str,
    end: &str,
    aggregate: Option<&str>,
) -> (Vec<Value>, String) {
    let (sink_url, received) = structured_sink().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"));
    cmd.arg("replay")
        .env("EVENT_STORE_URL", store)
        .env("BROKER_URL", &sink_url)
        .env("START_TIME", start)
        .env("END_TIME", end)
        .env_remove("AGGREGATE_ID");
    if let Some(a) = aggregate {
        cmd.env("AGGREGATE_ID", a);
    }
    let out = cmd.output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    let got = received.lock().unwrap().clone();
    (got, said)
}

/// A stand-in broker that keeps the structured CloudEvents POSTed to it.
async fn structured_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let addr = serve_http(move |req: http::Request<Bytes>| {
        let keep = keep.clone();
        async move {
            let structured = req
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/cloudevents+json");
            if !structured {
                return text_response(415, "structured events only");
            }
            keep.lock()
                .unwrap()
                .push(serde_json::from_slice(req.body()).unwrap());
            text_response(202, "")
        }
    })
    .await;
    (format!("http://{addr}/default/default"), received)
}

#[tokio::test(flavor = "multi_thread")]
async fn wasmfn_replay_sends_the_events_of_a_time_range_to_the_broker_marked_as_replayed() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let server = Server::spawn(
        &repo().join("deploy/patterns.toml"),
        &["--listen", "127.0.0.1:0", "--functions", "command-service"],
        &[("DATABASE_URL", &pg.url())],
    );
    let command = |path: &str, body: Value| {
        let url = server.url(path);
        let path = path.to_string();
        async move {
            let r = post(&url, body.to_string()).await;
            // 202: recorded, not published (this host has no subscriber for it).
            assert!(
                [201, 202].contains(&r.status),
                "{path}: {} {}",
                r.status,
                r.text()
            );
        }
    };
    let pause = || tokio::time::sleep(Duration::from_millis(30));
    command("/accounts", json!({"account": "acc-r1"})).await;
    command("/accounts/acc-r1/deposits", json!({"amount_cents": 100})).await;
    pause().await;
    let start = chrono::Utc::now();
    pause().await;
    command("/accounts/acc-r1/deposits", json!({"amount_cents": 200})).await;
    command("/accounts", json!({"account": "acc-r2"})).await;
    command("/accounts/acc-r1/withdrawals", json!({"amount_cents": 50})).await;
    pause().await;
    let end = chrono::Utc::now();
    pause().await;
    command("/accounts/acc-r2/deposits", json!({"amount_cents": 7})).await;

    let (store, start_t, end_t) = (
        server.url("/accounts"),
        start.to_rfc3339(),
        end.to_rfc3339(),
    );
    let replay = |aggregate: Option<&'static str>| replay(&store, &start_t, &end_t, aggregate);
    let (events, said) = replay(None).await;
    // Exactly the three recorded in the range, in the order they were recorded.
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acc-r1/3", "acc-r2/1", "acc-r1/4"], "{events:#?}");
    assert!(
        said.contains("Replay complete. 3 events published."),
        "{said}"
    );
    for e in &events {
        assert_eq!(e["replay"], "true", "{e}");
        assert_eq!(e["source"], "event-replayer", "{e}");
        assert_eq!(e["originalsource"], "/accounts", "{e}");
        let t = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
        assert!(t >= start && t <= end, "its original time, in range: {e}");
    }
    assert_eq!(events[0]["type"], "account.event.deposited");
    assert_eq!(events[0]["data"]["amount_cents"], 200);
    assert_eq!(events[2]["type"], "account.event.withdrawn");
    // One aggregate's.
    let (events, _) = replay(Some("acc-r1")).await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acc-r1/3", "acc-r1/4"]);
    // The listing says what is wrong with a time.
    let r = get(&server.url("/accounts/events?start_time=yesterday&end_time=2030-01-01T00:00:00Z"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("start_time \"yesterday\" is not an RFC 3339 UTC time")),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_reach_the_webhook_once_across_retries_and_restarts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let failing = Arc::new(Mutex::new(1));
    let (keep, fail) = (received.clone(), failing.clone());
    let hook = serve_http(move |req: http::Request<Bytes>| {
        let (keep, fail) = (keep.clone(), fail.clone());
        async move {
            let mut left = fail.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return text_response(502, "bad gateway");
            }
            keep.lock()
                .unwrap()
                .push(serde_json::from_slice(req.body()).unwrap());
            text_response(200, "ok")
        }
    })
    .await;
    // The shipped entry, with the webhook URL from a file as the Secret would mount it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("url"), format!("http://{hook}/notify\n")).unwrap();
    let text = std::fs::read_to_string(repo().join("deploy/seed-apis.toml"))
        .unwrap()
        .replace(
            "/var/run/secrets/webhook/url",
            &dir.path().join("url").display().to_string(),
        )
        .replace(
            r#"allowed_outbound_hosts = ["https://hooks.resimate.io"]"#,
            &format!(r#"allowed_outbound_hosts = ["http://{hook}"]"#),
        )
        .replace("../guests/", &format!("{}/", guests::GUESTS_DIR));
    let (_m, manifest) = common::manifest(&text);
    let deliver = |server: &Server| {
        let url = server.url("/.well-known/wasmfn/events/notifications");
        async move {
            send(
                "POST",
                &url,
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "cmp-1/active"),
                    ("ce-source", "/campaigns-api"),
                    ("ce-type", "campaign.launched"),
                    ("ce-subject", "cmp-1"),
                    ("content-type", "application/json"),
                ],
                json!({"campaign_id": "cmp-1", "name": "Spring sale", "state": "active"})
                    .to_string(),
            )
            .await
        }
    };
    let server = serve(&manifest, "notifications", &redis, &[]);
    let r = deliver(&server).await;
    assert_eq!(
        r.status,
        503,
        "the webhook's 502 asks the broker to retry: {}",
        r.text()
    );
    assert_eq!(deliver(&server).await.status, 202);
    drop(server);
    // A new pod, the same Redis: the broker's redelivery is a duplicate.
    let server = serve(&manifest, "notifications", &redis, &[]);
    assert_eq!(deliver(&server).await.status, 202);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["text"], "Campaign Spring sale is live.");

    // A host that died mid-send leaves its claim behind, and nothing recorded. While the
    // claim may still be live, a redelivery is asked to come back; once it has lapsed (a
    // claim two 60 s slots old), the redelivery notifies.
    let mut dead = DeadHost::on(&redis);
    let event = "wasmfn:notifications:notified:/campaigns-api:cmp-1/active";
    dead.run(&["DEL", &format!("{event}:done")]);
    dead.hold(event);
    let r = deliver(&server).await;
    assert_eq!(
        r.status,
        503,
        "a claim that may be live holds: {}",
        r.text()
    );
    dead.lapse(event);
    assert_eq!(deliver(&server).await.status, 202);
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "the lapsed claim was taken over"
    );
    assert_eq!(deliver(&server).await.status, 202);
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "and recorded: no third notification"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn campaigns_switch_from_blue_to_green_in_the_root_manifest_and_notify() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &repo().join("wasmfn.toml"),
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let r = post(
        &server.url("/campaigns"),
        r#"{"name":"Spring sale","channels":["email","push"]}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["api_version"].as_str()),
        (201, Some("v1")),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-wasmfn-version"), Some("blue"));
    let id = r.json()["id"].as_str().unwrap().to_string();
    for step in ["schedule", "launch"] {
        assert_eq!(
            post(&server.url(&format!("/campaigns/{id}/{step}")), "")
                .await
                .status,
            200
        );
    }
    // Green, by its tag, before the switch.
    let r = send(
        "GET",
        &server.url(&format!("/campaigns/{id}")),
        &[("x-wasmfn-version", "v2")],
        "",
    )
    .await;
    assert_eq!(
        (r.json()["api_version"].as_str(), r.json()["state"].as_str()),
        (Some("v2"), Some("active"))
    );
    // The switch: every request on green.
    let log = server.wait_for_log("admin listening");
    let admin = log
        .lines()
        .find(|l| l.contains("admin listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let r = send(
        "PUT",
        &format!("http://{admin}/functions/campaigns-api/weights"),
        &[("content-type", "application/json")],
        r#"{"green": 100}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..5 {
        let r = get(&server.url(&format!("/campaigns/{id}"))).await;
        assert_eq!(
            (
                r.header("x-wasmfn-version"),
                r.json()["api_version"].as_str()
            ),
            (Some("green"), Some("v2"))
        );
    }
    // The launch reached the notification service, which called its webhook (echo here).
    let log = server.wait_for_log("path=\"/echo/notifications\"");
    assert!(log.contains("path=\"/echo/notifications\""), "{log}");
}
