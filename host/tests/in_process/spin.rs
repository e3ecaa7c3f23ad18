//! Spin apps served unchanged from their own `spin.toml`: a component built with spin-sdk 7
//! (WASI 0.3) and nothing of wasmfn, its routes, grants, variables and environment read
//! from Spin's manifest, its key-value store and variables through Spin's interfaces.

use std::path::Path;
use std::sync::Arc;

use wasmfn::capabilities::CapabilityOptions;
use wasmfn::manifest::Manifest;
use wasmfn::server::{App, HostOptions};
use wasmfn_guest_artifacts as guests;

use super::common::{PostgresServer, RedisServer};
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
    // SQLite through both interfaces spin-sdk 5.2 binds, one database.
    let r = call(&app, "GET", "/counter/sql/v2?note=a", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v2 notes 1\n"));
    let r = call(&app, "GET", "/counter/sql/v3?note=b", "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v3 rowid 2 changes 1\n")
    );
    drop(app);
    let app = spin_app("spin-sdk5-counter", data.path());
    let r = call(&app, "GET", "/counter/apples", "").await;
    assert_eq!(r.text(), "apples 3\n", "kept across a restart");
    let r = call(&app, "GET", "/counter/sql/v2?note=c", "").await;
    assert_eq!(r.text(), "v2 notes 3\n", "the database too");
    assert!(data.path().join("default.db").is_file());

    // Redis (fermyon:spin/redis@2.0.0) at the address its variable names.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = redis_app(
        guests::SPIN_SDK5_COUNTER,
        &["/counter/*"],
        &redis,
        data.path(),
    );
    for n in 1..=2 {
        let r = call(&app, "GET", "/counter/redis/clicks", "").await;
        assert_eq!((r.status, r.text()), (200, format!("incr {n} hits {n}\n")));
    }
}

/// `component` as a wasmfn function serving `routes`, with `extra` keys (its grants), its
/// `default` database in `data`.
fn served(component: &str, routes: &[&str], extra: &str, data: &Path) -> Arc<App> {
    let options = HostOptions {
        capabilities: CapabilityOptions {
            data_dir: Some(data.to_path_buf()),
            ..CapabilityOptions::default()
        },
        ..HostOptions::default()
    };
    wasmfn::testing::app_with(
        &entry("app", component, routes, extra),
        &engine(Some(&super::common::cache_dir())),
        options,
    )
}

/// [`served`] with its Redis at `redis` (the variable `redis_address`, and the only address
/// it may reach), and the `default` SQLite database.
fn redis_app(component: &str, routes: &[&str], redis: &RedisServer, data: &Path) -> Arc<App> {
    let url = redis.url();
    let extra = format!(
        "sqlite_databases = [\"default\"]\nallowed_outbound_hosts = [\"{url}\"]\nvariables = {{ redis_address = \"{url}\" }}"
    );
    served(component, routes, &extra, data)
}

/// [`served`] with its PostgreSQL at `pg` (the variable `database_url`, and the only
/// address it may reach), and a `timeout`.
fn postgres_app(
    component: &str,
    routes: &[&str],
    pg: &PostgresServer,
    timeout: &str,
    data: &Path,
) -> Arc<App> {
    let extra = format!(
        "timeout = \"{timeout}\"\nallowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]\nvariables = {{ database_url = \"{}\" }}",
        pg.port,
        pg.url()
    );
    served(component, routes, &extra, data)
}

/// Connections to `pg` running `pattern`'s statements, counted from outside by a native
/// client.
async fn backends(client: &tokio_postgres::Client, pattern: &str) -> i64 {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
            &[&pattern],
        )
        .await
        .unwrap();
    row.get(0)
}

async fn native(pg: &PostgresServer) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn spin_events() {
    // spin-sdk 7 (WASI 0.3): the seed's event store on a real PostgreSQL.
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let app = postgres_app(guests::SPIN_EVENTS, &["/events/*"], &pg, "5s", data.path());
    let r = call(&app, "POST", "/events/setup", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));

    // Two hosts (each with its own pools) append to one stream at once: for every version
    // exactly one wins, and the other is told the version exists (SQLSTATE 23505).
    let other = postgres_app(guests::SPIN_EVENTS, &["/events/*"], &pg, "5s", data.path());
    let mut racing = Vec::new();
    for version in 1..=20 {
        for host in [app.clone(), other.clone()] {
            racing.push(tokio::spawn(async move {
                let uri = format!("/events/acct-1?version={version}&type=deposited");
                call(&host, "POST", uri, format!("{{\"amount\": {version}}}"))
                    .await
                    .status
            }));
        }
    }
    let mut statuses = Vec::new();
    for task in racing {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 20);
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 20);
    let r = call(&app, "GET", "/events/acct-1?after=18", "").await;
    assert_eq!(
        r.text(),
        "19 deposited {\"amount\": 19}\n20 deposited {\"amount\": 20}\n",
        "a replay from a version"
    );
    // SQL in a parameter is a value, stored as text; data that is not JSON is refused.
    let evil = "x';TRUNCATE+events;--";
    let r = call(
        &app,
        "POST",
        format!("/events/{evil}?version=1&type=t"),
        "{}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        call(&app, "GET", format!("/events/{evil}"), "")
            .await
            .text(),
        "1 t {}\n"
    );
    let r = call(&app, "POST", "/events/a?version=1&type=t", "not json").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("JSON"), "{}", r.text());

    // Every value type of the interface, sent as a parameter and read back.
    let r = call(&app, "GET", "/events/debug/types", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let types = [
        "Boolean",
        "Int16",
        "Int32",
        "Int64",
        "Floating32",
        "Floating64",
        "Str",
        "Binary",
        "Date",
        "Time",
        "Datetime",
        "Timestamp",
        "Uuid",
        "Jsonb",
        "Decimal",
        "RangeInt32",
        "RangeInt64",
        "RangeDecimal",
        "ArrayInt32",
        "ArrayInt64",
        "ArrayDecimal",
        "ArrayStr",
        "Interval",
        "Str",
        "Other(\"inet\")",
    ];
    let columns: Vec<String> = types.iter().map(|t| format!("DbDataType::{t}")).collect();
    let values = [
        "Boolean(true)",
        "Int16(-2)",
        "Int32(40000)",
        "Int64(1099511627776)",
        "Floating32(1.5)",
        "Floating64(-0.25)",
        "Str(\"x'; DROP TABLE events; --\")",
        "Binary([0, 1, 255])",
        "Date((2026, 12, 7))",
        "Time((13, 14, 15, 500000000))",
        "Datetime((2026, 12, 7, 13, 14, 15, 0))",
        // timestamptz, sent as Unix seconds, read back in UTC.
        "Datetime((2026, 11, 30, 0, 53, 20, 0))",
        "Uuid(\"67e55044-10b1-426f-9247-bb680e5fe0c8\")",
        // `{"a": [1, 2]}`, as jsonb writes it.
        "Jsonb([123, 34, 97, 34, 58, 32, 91, 49, 44, 32, 50, 93, 125])",
        "Decimal(\"12345.6789\")",
        "RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((10, RangeBoundKind::Exclusive))))",
        "RangeInt64((Some((5, RangeBoundKind::Inclusive)), None))",
        "RangeDecimal((Some((\"1.5\", RangeBoundKind::Inclusive)), Some((\"2.5\", RangeBoundKind::Inclusive))))",
        "ArrayInt32([Some(1), None, Some(3)])",
        "ArrayInt64([Some(-1)])",
        "ArrayDecimal([Some(\"0.1\"), None])",
        "ArrayStr([Some(\"a\"), None])",
        "Interval(Interval { micros: 1000000, days: 2, months: 3 })",
        "DbNull",
        // inet, which the interface has no type for: its binary form.
        "Unsupported([2, 32, 0, 4, 10, 0, 0, 1])",
    ];
    let mut expected = format!("columns {}\n", columns.join(","));
    for value in values {
        expected.push_str(&format!("DbValue::{value}\n"));
    }
    assert_eq!(r.text(), expected);

    // A database error reaches the guest with its SQLSTATE, not as a trap.
    let r = call(&app, "GET", "/events/debug/fail", "").await;
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("22012: "), "{}", r.text());

    // A slow query is cut at the function's deadline, on the server too. (A burst of
    // requests and PostgreSQL going away are tested on the spawned host, tests/databases.rs.)
    let client = native(&pg).await;
    let r = call(&app, "GET", "/events/debug/sleep?s=60", "").await;
    assert_eq!(r.status, 504, "{}", r.text());
    let mut sleeping = 1;
    for _ in 0..100 {
        sleeping = backends(&client, "SELECT pg_sleep%").await;
        if sleeping == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sleeping, 0, "the query was cancelled on the server");

    // An address its allowed_outbound_hosts does not name is refused at open.
    let denied = served(
        guests::SPIN_EVENTS,
        &["/events/*"],
        &format!(
            "allowed_outbound_hosts = [\"postgres://127.0.0.1:1\"]\nvariables = {{ database_url = \"{}\" }}",
            pg.url()
        ),
        data.path(),
    );
    let r = call(&denied, "POST", "/events/setup", "").await;
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("is not in this component's allowed_outbound_hosts"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn spin_orders() {
    // spin-sdk 7 (WASI 0.3): SQLite from its own spin.toml.
    let data = tempfile::tempdir().unwrap();
    let app = spin_app("spin-orders", data.path());
    let r = call(&app, "POST", "/orders?customer=acme&total=12.5", "").await;
    assert_eq!((r.status, r.text().as_str()), (201, "1\n"));
    // SQL in a parameter is a value, stored as text.
    let evil = "x');DROP/**/TABLE/**/orders;--";
    let r = call(&app, "POST", format!("/orders?customer={evil}&total=1"), "").await;
    assert_eq!((r.status, r.text().as_str()), (201, "2\n"));
    let r = call(&app, "GET", "/orders", "").await;
    assert_eq!(r.text(), format!("1 acme 12.5\n2 {evil} 1\n"));
    // A transaction across calls on one connection, and the rows it changed.
    let r = call(&app, "POST", "/orders/transfer?from=acme&to=globex", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "1\n"));
    let r = call(&app, "GET", "/orders/1", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "1 globex 12.5\n"));
    assert_eq!(call(&app, "GET", "/orders/99", "").await.status, 404);

    // Redis (spin:redis@3.0.0): the seed's aggregator, hashes with expiry, through
    // `execute`; and every typed helper.
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = redis_app(
        guests::SPIN_ORDERS,
        &["/orders/*", "/metrics/*"],
        &redis,
        data.path(),
    );
    for _ in 0..2 {
        let r = call(&app, "POST", "/metrics/spring?clicks=3&spend=1.25", "").await;
        assert_eq!((r.status, r.text().as_str()), (200, "recorded\n"));
    }
    let r = call(&app, "GET", "/metrics/spring", "").await;
    assert_eq!(r.text(), "clicks=6\nspend=2.5\n");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut native = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("metrics:spring:*")
        .query_async(&mut native)
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut native)
        .await
        .unwrap();
    assert!((3500..=3600).contains(&ttl), "the window expires: {ttl}");
    for (cmd, answer) in [
        ("incr", "1"),
        ("incr", "2"),
        ("get", "2"),
        ("del", "1"),
        ("get", "(nil)"),
        ("sadd", "2"),
        ("smembers", "a,b"),
        ("srem", "1"),
        ("smembers", "b"),
        ("publish", "published"),
    ] {
        let key = if cmd.starts_with('s') { "set" } else { "n" };
        let r = call(&app, "GET", format!("/metrics/{key}/raw?cmd={cmd}"), "").await;
        assert_eq!((r.status, r.text()), (200, format!("{answer}\n")), "{cmd}");
    }
    // INCR of a set is a type error, reported to the guest, not a trap.
    let r = call(&app, "GET", "/metrics/set/raw?cmd=incr", "").await;
    assert_eq!(r.status, 500);
    assert!(r.text().to_lowercase().contains("type"), "{}", r.text());

    // Redis going away fails the call with a reason; the host keeps serving, and the
    // same connection recovers when Redis is back.
    redis.stop();
    let r = call(&app, "GET", "/metrics/n/raw?cmd=incr", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().starts_with("error: "), "{}", r.text());
    let r = call(&app, "GET", "/orders/1", "").await;
    assert_eq!(r.status, 200, "SQLite is unaffected");
    redis.restart();
    let mut recovered = None;
    for _ in 0..50 {
        let r = call(&app, "GET", "/metrics/n/raw?cmd=incr", "").await;
        if r.status == 200 {
            recovered = Some(r.text());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        recovered.as_deref(),
        Some("1\n"),
        "a fresh Redis, reached again"
    );

    // An address its allowed_outbound_hosts does not name is refused at open.
    let denied = wasmfn::testing::app(
        &entry(
            "app",
            guests::SPIN_ORDERS,
            &["/metrics/*"],
            &format!(
                "allowed_outbound_hosts = [\"redis://127.0.0.1:1\"]\nvariables = {{ redis_address = \"{}\" }}",
                redis.url()
            ),
        ),
        &engine(Some(&super::common::cache_dir())),
    );
    let r = call(&denied, "GET", "/metrics/n/raw?cmd=incr", "").await;
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("is not in this component's allowed_outbound_hosts"),
        "{}",
        r.text()
    );
}
