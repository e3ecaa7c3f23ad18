//! What a function pays to use a capability, beside native Rust doing the same with the same
//! client, in one run: key-value `get`, `set` and `increment` per operation in the embedded
//! store (SQLite) and in Redis on loopback, and one outbound GET to a server on loopback.
//! Also the same `get` from a spin-sdk 7 and a spin-sdk 5.2 guest through Spin's key-value
//! interfaces, against wasmfn's SDK, side by side: what the host's Spin interfaces add per
//! operation. And the databases guests reach through Spin's interfaces, beside native Rust
//! with the same driver and pool: a point SELECT and an INSERT on PostgreSQL
//! (tokio-postgres, deadpool), from a spin-sdk 7 guest, and a Redis `HINCRBY`.
//!
//! `cargo run --release -p wasmfn-benches --bin capabilities` (needs `redis-server` on
//! PATH for the Redis rows, and Debian's `postgresql` for the PostgreSQL ones) writes its table into benches/README.md between the
//! `capabilities:begin` and `capabilities:end` markers; `--no-write` only prints it,
//! `--rounds N` (100) sets the samples per figure, `--only kv|outbound|databases` runs one
//! section.
//!
//! A guest's cost per operation is taken as the difference between a request that does
//! 100 operations and one that does none, divided by 100, so instantiation and the request
//! itself are left out; the native figure is the same 100 operations in a loop, divided
//! by 100. Medians over the rounds, all on one current-thread runtime.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use wasmfn::capabilities::CapabilityOptions;
use wasmfn::engine::{EngineOptions, PoolingMode};
use wasmfn::server::{App, HostOptions};
use wasmfn::testing;
use wasmfn_benches::{Report, free_port, quantile};

const OPS: u32 = 100;
/// Gets per request for the Spin rows: their differences are a few microseconds.
const SPIN_OPS: u32 = 1000;

fn main() {
    // SAFETY: nothing else runs yet; with RUST_BACKTRACE set every error value would
    // capture a backtrace.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let mut rounds = 100;
    let mut write = true;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds N")
            }
            "--no-write" => write = false,
            "--only" => only = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}; see the top of this file"),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = std::env::temp_dir().join(format!("wasmfn-capabilities-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    let redis = Redis::start();
    let mut report = Report::default();

    let wants = |section: &str| only.as_deref().is_none_or(|o| o == section);
    if wants("kv") {
        report.section(&format!(
        "Key-value, per operation: a guest's request of {OPS} operations minus one of none, vs native Rust with the same client"
    ));
        let embedded = rt.block_on(async { counter_app(&data, "type = \"embedded\"") });
        let native_sqlite = NativeSqlite::open(&data.join("native.sqlite"));
        for op in ["get", "set", "increment"] {
            let guest = rt.block_on(guest_per_op(&embedded, "/bench/kv", op, rounds));
            let native = rt.block_on(samples(rounds, || async { native_sqlite.run(op) }));
            row(
                &mut report,
                &format!("embedded (SQLite), {op}"),
                guest,
                native,
                None,
            );
        }
        match &redis {
            Some(redis) => {
                let app = rt.block_on(async {
                    counter_app(
                        &data,
                        &format!("type = \"redis\"\nurl = \"{}\"", redis.url()),
                    )
                });
                let native = rt.block_on(NativeRedis::connect(&redis.url()));
                for op in ["get", "set", "increment"] {
                    let guest = rt.block_on(guest_per_op(&app, "/bench/kv", op, rounds));
                    let native_t = rt.block_on(samples(rounds, || native.run(op)));
                    row(
                        &mut report,
                        &format!("Redis on loopback, {op}"),
                        guest,
                        native_t,
                        Some(1.5),
                    );
                }
            }
            None => report.row("Redis rows", "skipped: no redis-server on PATH", ""),
        }
        // The same get from a Spin app (spin-sdk 7, WASI 0.3, spin:key-value@3.0.0) on the
        // same kind of store, against wasmfn's SDK; and from a spin-sdk 5.2 guest (WASI 0.2,
        // fermyon:spin/key-value@2.0.0), which calls synchronously as wasmfn's SDK does:
        // what the interface costs apart from the async call. A few microseconds each, so
        // measured side by side, round by round, with SPIN_OPS gets per request.
        let spin = rt.block_on(async { spin_app(&data) });
        let n = SPIN_OPS;
        let cases = [
            (
                &*embedded,
                format!("/bench/kv?op=get&n={n}"),
                format!("/bench/kv?op=none&n={n}"),
            ),
            (
                &*spin,
                format!("/hello/bench?op=get&n={n}"),
                format!("/hello/bench?op=none&n={n}"),
            ),
            (
                &*spin,
                format!("/counter/bench/get?n={n}"),
                format!("/counter/bench/none?n={n}"),
            ),
        ];
        let medians = rt.block_on(side_by_side(&cases, n, rounds));
        let sdk_get = medians[0];
        for (what, spin_get) in [
            (
                "spin-sdk 7 guest (spin:key-value@3.0.0, WASI 0.3 async)",
                medians[1],
            ),
            (
                "spin-sdk 5.2 guest (fermyon:spin/key-value@2.0.0, WASI 0.2)",
                medians[2],
            ),
        ] {
            let ratio = spin_get / sdk_get;
            report.row(
                format!(
                    "embedded (SQLite), get from a {what}, vs wasmfn's SDK ({n} gets a request, side by side)"
                ),
                format!("{:.1} us ({:.1} us)", spin_get * 1e6, sdk_get * 1e6),
                format!(
                    "{ratio:.2}x wasmfn's SDK (goal <= 1.2x: {})",
                    if ratio <= 1.2 { "met" } else { "not met" }
                ),
            );
        }
    }

    if wants("databases") {
        report.section(&format!(
            "Databases through Spin's interfaces, per operation: a guest's request of {OPS} operations on one connection minus one of none, vs native Rust with the same driver and pool (PostgreSQL without a sync per commit, so the disk does not swing the figures)"
        ));
        match Postgres::start() {
            Some(pg) => {
                let f = rt.block_on(postgres(&pg, &data, rounds));
                for (what, guest, native) in [
                    (
                        "point SELECT from spin-sdk 7 (spin:postgres@4.2.0, WASI 0.3 async, rows streamed)",
                        f.spin_select,
                        f.native_select,
                    ),
                    ("INSERT from spin-sdk 7", f.spin_insert, f.native_insert),
                    (
                        "point SELECT from wasmfn-sdk (spin:postgres@4.0.0, WASI 0.2)",
                        f.sdk_select,
                        f.native_select,
                    ),
                    ("INSERT from wasmfn-sdk", f.sdk_insert, f.native_insert),
                ] {
                    row(
                        &mut report,
                        &format!("PostgreSQL on loopback, {what}"),
                        guest,
                        native,
                        Some(1.3),
                    );
                }
            }
            None => report.row(
                "PostgreSQL rows",
                "skipped: PostgreSQL is not installed",
                "",
            ),
        }
        match &redis {
            Some(redis) => {
                let text = format!(
                    "[[functions]]\nname = \"orders\"\ncomponent = {:?}\nroutes = [\"/metrics/*\"]\nallowed_outbound_hosts = [\"{url}\"]\nvariables = {{ redis_address = \"{url}\" }}\n",
                    wasmfn_guest_artifacts::SPIN_ORDERS,
                    url = redis.url()
                );
                let app = app(&text, &data);
                let guest =
                    rt.block_on(guest_per_op(&app, "/metrics/bench/run", "hincrby", rounds));
                let native = rt.block_on(NativeRedis::connect(&redis.url()));
                let native_t = rt.block_on(samples(rounds, || native.run("hincrby")));
                row(
                    &mut report,
                    "Redis on loopback, HINCRBY through `execute`",
                    guest,
                    native_t,
                    Some(1.3),
                );
            }
            None => report.row("Redis HINCRBY", "skipped: no redis-server on PATH", ""),
        }
    }

    if wants("outbound") {
        report.section(
        "Outbound HTTP, per call: a guest's request of 10 GETs minus one of none, vs the same GET from a native hyper client",
    );
        let (guest, native) = rt.block_on(outbound(rounds));
        row(
            &mut report,
            "GET to a hyper server on loopback",
            guest,
            native,
            Some(1.3),
        );
    }

    if write {
        report.write_readme(
            "capabilities",
            "",
            "cargo run --release -p wasmfn-benches --bin capabilities",
            "guest per operation (native), median",
        );
    }
    let _ = std::fs::remove_dir_all(&data);
}

fn row(report: &mut Report, what: &str, guest: f64, native: f64, goal: Option<f64>) {
    let ratio = guest / native;
    let verdict = match goal {
        Some(g) if ratio <= g => format!("{ratio:.2}x native (goal <= {g}x: met)"),
        Some(g) => format!("{ratio:.2}x native (goal <= {g}x: not met)"),
        None => format!("{ratio:.2}x native"),
    };
    report.row(
        what,
        format!("{:.1} us ({:.1} us)", guest * 1e6, native * 1e6),
        verdict,
    );
}

/// The median per-operation time of `f`, which does [`OPS`] operations, over `rounds`.
async fn samples<F, Fut>(rounds: usize, f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    f().await;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed().as_secs_f64() / f64::from(OPS));
    }
    quantile(&mut times, 0.5)
}

fn counter_app(data: &Path, store: &str) -> Arc<App> {
    let text = format!(
        "[key_value.default]\n{store}\n\n[[functions]]\nname = \"counter\"\ncomponent = {:?}\nroutes = [\"/bench/kv\"]\nkey_value_stores = [\"default\"]\n",
        wasmfn_guest_artifacts::COUNTER
    );
    app(&text, data)
}

fn spin_app(data: &Path) -> Arc<App> {
    let text = format!(
        "[key_value.default]\ntype = \"embedded\"\npath = {:?}\n\n[[functions]]\nname = \"spin\"\ncomponent = {:?}\nroutes = [\"/hello/*\"]\nkey_value_stores = [\"default\"]\n\n[[functions]]\nname = \"spin-sdk5\"\ncomponent = {:?}\nroutes = [\"/counter/*\"]\nkey_value_stores = [\"default\"]\n",
        data.join("spin.sqlite"),
        wasmfn_guest_artifacts::SPIN_HELLO,
        wasmfn_guest_artifacts::SPIN_SDK5_COUNTER
    );
    app(&text, data)
}

fn app(text: &str, data: &Path) -> Arc<App> {
    let engine = testing::engine(EngineOptions {
        pooling: PoolingMode::On,
        ..EngineOptions::default()
    });
    let options = HostOptions {
        capabilities: CapabilityOptions {
            data_dir: Some(data.to_path_buf()),
            ..CapabilityOptions::default()
        },
        ..HostOptions::default()
    };
    testing::app_with(text, &engine, options)
}

async fn get(app: &App, uri: &str) -> Bytes {
    let request = http::Request::get(uri)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = testing::respond(app, request).await;
    assert!(
        response.status().is_success(),
        "{uri}: {} {:?}",
        response.status(),
        response.body()
    );
    response.into_body()
}

/// A request that does [`OPS`] of `op`, less one that does none, per operation.
async fn guest_per_op(app: &App, path: &str, op: &str, rounds: usize) -> f64 {
    let with = format!("{path}?op={op}&n={OPS}");
    let without = format!("{path}?op=none&n={OPS}");
    per_op(app, &with, &without, rounds).await
}

/// A request `with` [`OPS`] operations, less one `without`, per operation.
async fn per_op(app: &App, with: &str, without: &str, rounds: usize) -> f64 {
    let case = (app, with.to_string(), without.to_string());
    side_by_side(&[case], OPS, rounds).await[0]
}

/// Per operation, for each (app, request with `n` operations, request with none): the
/// median over `rounds` of the difference, every case measured in turn within a round.
/// Alternated, so drift in the machine touches every case alike.
async fn side_by_side(cases: &[(&App, String, String)], n: u32, rounds: usize) -> Vec<f64> {
    let mut diffs = vec![Vec::with_capacity(rounds); cases.len()];
    for (app, with, _) in cases {
        get(app, with).await;
    }
    for _ in 0..rounds {
        for ((app, with, without), diffs) in cases.iter().zip(&mut diffs) {
            let started = Instant::now();
            get(app, without).await;
            let empty = started.elapsed();
            let started = Instant::now();
            get(app, with).await;
            let full = started.elapsed();
            diffs.push(full.saturating_sub(empty).as_secs_f64() / f64::from(n));
        }
    }
    diffs.iter_mut().map(|d| quantile(d, 0.5)).collect()
}

async fn outbound(rounds: usize) -> (f64, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"{\"rate\":1.07}"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}/rates");
    let text = format!(
        "[[functions]]\nname = \"call\"\ncomponent = {:?}\nroutes = [\"/call\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n",
        wasmfn_guest_artifacts::OUTBOUND_CALL
    );
    let app = app(&text, Path::new("/nonexistent"));
    let calls = 10u32;
    let with = format!("/call?url={url}&n={calls}");
    let without = format!("/call?url={url}&n=0");
    get(&app, &with).await;
    let mut diffs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        get(&app, &without).await;
        let empty = started.elapsed();
        let started = Instant::now();
        get(&app, &with).await;
        diffs.push(started.elapsed().saturating_sub(empty).as_secs_f64() / f64::from(calls));
    }
    let guest = quantile(&mut diffs, 0.5);

    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let uri: http::Uri = url.parse().unwrap();
    let native = samples(rounds, || {
        let (client, uri) = (client.clone(), uri.clone());
        async move {
            for _ in 0..OPS {
                let response = client.get(uri.clone()).await.unwrap();
                response.into_body().collect().await.unwrap();
            }
        }
    })
    .await;
    (guest, native)
}

/// What the embedded store does per operation, with the same client (rusqlite, WAL,
/// synchronous = NORMAL), in this thread.
struct NativeSqlite(rusqlite::Connection);

impl NativeSqlite {
    fn open(path: &Path) -> Self {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);",
        )
        .unwrap();
        Self(c)
    }

    fn run(&self, op: &str) {
        const UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        let value = [7u8; 64];
        let get = |key: &str| -> Option<Vec<u8>> {
            let mut s = self
                .0
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .unwrap();
            rusqlite::OptionalExtension::optional(s.query_row([key], |r| r.get(0))).unwrap()
        };
        for _ in 0..OPS {
            match op {
                "get" => {
                    get("bench:get");
                }
                "set" => {
                    let mut s = self.0.prepare_cached(UPSERT).unwrap();
                    s.execute(rusqlite::params!["bench:set", value]).unwrap();
                }
                _ => {
                    let tx = rusqlite::Transaction::new_unchecked(
                        &self.0,
                        rusqlite::TransactionBehavior::Immediate,
                    )
                    .unwrap();
                    let n: u64 = get("bench:inc")
                        .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
                        .unwrap_or(0);
                    let mut s = tx.prepare_cached(UPSERT).unwrap();
                    s.execute(rusqlite::params![
                        "bench:inc",
                        (n + 1).to_string().into_bytes()
                    ])
                    .unwrap();
                    drop(s);
                    tx.commit().unwrap();
                }
            }
        }
    }
}

/// Redis with the same client the host uses (one multiplexed `ConnectionManager`).
struct NativeRedis(redis::aio::ConnectionManager);

impl NativeRedis {
    async fn connect(url: &str) -> Self {
        let client = redis::Client::open(url).unwrap();
        Self(redis::aio::ConnectionManager::new(client).await.unwrap())
    }

    async fn run(&self, op: &str) {
        let mut c = self.0.clone();
        for _ in 0..OPS {
            let cmd = match op {
                "get" => redis::cmd("GET").arg("native:get").clone(),
                "set" => redis::cmd("SET")
                    .arg("native:set")
                    .arg(&[7u8; 64][..])
                    .clone(),
                "hincrby" => redis::cmd("HINCRBY")
                    .arg("native:hash")
                    .arg("clicks")
                    .arg(1)
                    .clone(),
                _ => redis::cmd("INCRBY").arg("native:inc").arg(1).clone(),
            };
            let _: redis::Value = cmd.query_async(&mut c).await.unwrap();
        }
    }
}

/// A `redis-server` on a free port, for this run.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per point SELECT and per INSERT on `pg`: from a spin-sdk 7 guest, from a wasmfn-sdk
/// guest, and from native Rust.
struct PgFigures {
    spin_select: f64,
    spin_insert: f64,
    sdk_select: f64,
    sdk_insert: f64,
    native_select: f64,
    native_insert: f64,
}

async fn postgres(pg: &Postgres, data: &Path, rounds: usize) -> PgFigures {
    let url = pg.url();
    let text = format!(
        "[[functions]]\nname = \"events\"\ncomponent = {:?}\nroutes = [\"/events/*\"]\nallowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]\nvariables = {{ database_url = \"{url}\" }}\n",
        wasmfn_guest_artifacts::SPIN_EVENTS,
        pg.port
    );
    let spin = app(&text, data);
    let request = http::Request::post("/events/setup")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(testing::respond(&spin, request).await.status().is_success());
    let request = http::Request::post("/events/bench?version=1&type=opened")
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    testing::respond(&spin, request).await;
    let spin_select = guest_per_op(&spin, "/events/debug/bench", "select", rounds).await;
    let spin_insert = guest_per_op(&spin, "/events/debug/bench", "insert", rounds).await;
    let text = format!(
        "[[functions]]\nname = \"counter\"\ncomponent = {:?}\nroutes = [\"/bench/*\"]\nallowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]\nvariables = {{ database_url = \"{url}\" }}\n",
        wasmfn_guest_artifacts::COUNTER,
        pg.port
    );
    let sdk = app(&text, data);
    let sdk_select = guest_per_op(&sdk, "/bench/sql", "select", rounds).await;
    let sdk_insert = guest_per_op(&sdk, "/bench/sql", "insert", rounds).await;

    // The same statements from native Rust: the same driver, the same pool crate, one
    // connection held, statements prepared once.
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .build()
        .unwrap();
    let client = pool.get().await.unwrap();
    let native_select = samples(rounds, || async {
        let s = client
            .prepare_cached(
                "SELECT version, event_type FROM events WHERE aggregate_id = $1 AND version = $2",
            )
            .await
            .unwrap();
        for _ in 0..OPS {
            client.query(&s, &[&"bench", &1i32]).await.unwrap();
        }
    })
    .await;
    let native_insert = samples(rounds, || async {
        let s = client
            .prepare_cached("INSERT INTO bench_rows (n) VALUES ($1)")
            .await
            .unwrap();
        for i in 0..OPS {
            client.execute(&s, &[&i64::from(i)]).await.unwrap();
        }
    })
    .await;
    PgFigures {
        spin_select,
        spin_insert,
        sdk_select,
        sdk_insert,
        native_select,
        native_insert,
    }
}

/// A throwaway PostgreSQL cluster (Debian's `postgresql`) on a free port, for this run; as
/// root, run as the `postgres` user, since the server refuses root.
struct Postgres {
    port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Postgres {
    fn start() -> Option<Self> {
        use std::os::unix::process::CommandExt;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let id = |args: &[&str]| -> Option<u32> {
            let out = Command::new("id").args(args).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let user = match id(&["-u"]) {
            Some(0) => Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?)),
            _ => None,
        };
        let dir = std::env::temp_dir().join(format!("wasmfn-bench-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let command = |program: &str| {
            let mut c = Command::new(bin.join(program));
            if let Some((uid, gid)) = user {
                c.uid(uid).gid(gid);
            }
            c.env("LC_ALL", "C").current_dir(&dir);
            c
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).ok()?;
        }
        let ok = command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let port = free_port();
        let child = command("postgres")
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(&dir)
            // What is measured is the way to the server and back, not the disk: without a
            // sync per commit an INSERT's time does not swing with the disk's.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Some(Self { port, dir, child });
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
