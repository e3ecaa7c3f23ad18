//! Requests per second on each example application's main routes, beside `hello` served by
//! the same host in the same run: what a stateful route costs against the smallest one.
//!
//! `cargo run --release -p wasmfn-benches --bin apps` builds the release host, serves the
//! root `wasmfn.toml` (embedded stores in a fresh data dir) and `deploy/patterns.toml`
//! (Redis stores, on a `redis-server` it starts; those rows are skipped without one), seeds
//! each application with data, and runs wrk (1 thread, 32 connections, pinned to CPU 0;
//! the host on CPU 1) on each route, the routes alternated over `--rounds` (2) rounds of
//! `--seconds` (5). The table goes into benches/README.md between the `apps:begin` and
//! `apps:end` markers (`--no-write` only prints it).
//!
//! The saga row is different: `POST /orders` answers 202 at once and the saga goes on in
//! the host (order, inventory, payment and order again, each a fresh instance, each step
//! writing the store), so besides wrk's accepted orders per second it reports whole sagas
//! completed per second, from the first order until the last one settled.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmfn_benches::{Report, free_port, get_status, quantile, repo_root, wrk_ms};

const CLIENT_CPU: &str = "0";
const SERVER_CPU: &str = "1";
const CONNECTIONS: u32 = 32;

fn main() {
    // SAFETY: nothing else runs yet; with RUST_BACKTRACE set every error value would
    // capture a backtrace.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let (mut rounds, mut seconds, mut write): (u64, u64, bool) = (2, 5, true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|n| n.parse().ok()).expect("a number");
        match arg.as_str() {
            "--rounds" => rounds = number(),
            "--seconds" => seconds = number(),
            "--no-write" => write = false,
            "--bench" => {}
            other => panic!("unknown argument {other}; see the top of this file"),
        }
    }
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "wasmfn", "--bin", "wasmfn"])
        .env_remove("RUST_BACKTRACE")
        .status()
        .expect("cargo");
    assert!(status.success(), "building the release host failed");
    let work = std::env::temp_dir().join(format!("wasmfn-apps-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut report = Report::default();

    // The root manifest, as `cargo examples` serves it.
    let manifest = stocked(&root, "wasmfn.toml", "guests/target", &work);
    let host = Host::start(&root, &manifest, &work.join("root"), &[]);
    let port = host.port;
    let user = request(
        port,
        "POST",
        "/users",
        &[],
        r#"{"email":"ada@example.com","name":"Ada"}"#,
    );
    assert_eq!(user.0, 201, "{}", user.1);
    let campaign = request(port, "POST", "/campaigns", &[], r#"{"name":"Spring sale"}"#);
    assert_eq!(campaign.0, 201, "{}", campaign.1);
    let order = request(port, "POST", "/orders", &[], ORDER);
    assert_eq!(order.0, 202, "{}", order.1);
    for n in 2..=50 {
        let body = format!(r#"{{"email":"user{n}@example.com","name":"User {n}"}}"#);
        assert_eq!(request(port, "POST", "/users", &[], &body).0, 201);
    }
    let routes = [
        Route::get("hello (baseline)", "/hello?name=bench"),
        Route::get("users-api: GET /users/{id}", "/users/usr-000001"),
        Route::get("users-api: GET /users?limit=20", "/users?limit=20"),
        Route::get(
            "campaigns-api (blue): GET /campaigns/{id}",
            "/campaigns/cmp-00001",
        ),
        Route::post(
            "core-model-api: POST a mortgage model (cached)",
            "/api/v1/models/mortgage",
            &[],
            r#"{"principal":300000,"annual_rate_percent":6,"years":30}"#,
        ),
        Route::event(
            "notification-service: an event notified through its webhook (echo), deduped by id",
            "notification-service",
            "campaign.launched",
            "/bench",
            r#"{"id":"cmp-00001","name":"Spring sale"}"#,
            true,
        ),
        Route::get("order saga: GET /orders/{id}", "/orders/ord-000001"),
        Route::get("order saga: GET /inventory/{item}", "/inventory/widget"),
    ];
    report.section(&format!(
        "Root manifest (embedded stores): wrk -t1 -c{CONNECTIONS}, req/s (p99), {rounds} rounds x {seconds} s, routes alternated"
    ));
    let hello = load_rows(&routes, port, &work, rounds, seconds, None, &mut report);
    sagas(
        "order saga (embedded; each outcome also notified and logged)",
        port,
        &work,
        seconds,
        hello,
        &mut report,
    );
    drop(host);

    match Redis::start(&work) {
        None => report.row(
            "deploy/patterns.toml on Redis",
            "skipped: no redis-server on PATH",
            "",
        ),
        Some(redis) => {
            let env = [("REDIS_URL", format!("redis://127.0.0.1:{}", redis.port))];
            let patterns = stocked(&root, "deploy/patterns.toml", "../guests/target", &work);
            let host = Host::start(&root, &patterns, &work.join("p"), &env);
            let port = host.port;
            // Enough accounts that two of 32 connections seldom deposit to the same one at
            // once (such a pair is a 409 for one of them: a stale append, by design).
            for n in 0..ACCOUNTS {
                let body = format!(r#"{{"account":"acc-{n}"}}"#);
                let r = request(port, "POST", "/accounts", &[], &body);
                assert_eq!(r.0, 201, "{}", r.1);
            }
            let routes = [
                Route::get("query-service: GET /balances/{id}", "/balances/acc-1"),
                Route::deposits(),
                Route::event(
                    "event-filter: a CloudEvent routed and reshaped (reply)",
                    "event-filter",
                    "order.created",
                    "legacy-system",
                    r#"{"order_id":"o-1"}"#,
                    false,
                ),
                Route::event(
                    "event-aggregator: a metric counted in its window",
                    "event-aggregator",
                    "metric.recorded",
                    "/bench",
                    r#"{"key":"cpu","value":0.5}"#,
                    true,
                ),
            ];
            report.section(&format!(
                "deploy/patterns.toml (Redis on loopback), a second host: wrk -t1 -c{CONNECTIONS}, req/s (p99), against hello above"
            ));
            load_rows(
                &routes,
                port,
                &work,
                rounds,
                seconds,
                Some(hello),
                &mut report,
            );
            let order = request(port, "POST", "/orders", &[], ORDER);
            assert_eq!(order.0, 202, "{}", order.1);
            sagas(
                "order saga (Redis)",
                port,
                &work,
                seconds,
                hello,
                &mut report,
            );
            drop(host);
            drop(redis);
        }
    }
    if write {
        report.write_readme(
            "apps",
            "",
            "cargo run --release -p wasmfn-benches --bin apps",
            "req/s, median (p99)",
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// A copy of the shipped manifest at `path` in `work`, its components found from there
/// (`guests` is how it names their directory), with stock for every order the load places
/// (the shipped manifests have 10 widgets).
fn stocked(root: &Path, path: &str, guests: &str, work: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root.join(path))
        .unwrap()
        .replace(
            &format!("\"{guests}"),
            &format!("\"{}/guests/target", root.display()),
        )
        .replace(
            r#""stock.widget" = "10""#,
            r#""stock.widget" = "1000000000""#,
        );
    let copy = work.join(Path::new(path).file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    copy
}

const ORDER: &str = r#"{"item":"widget","quantity":1,"amount_cents":500}"#;
const ACCOUNTS: usize = 2048;

/// One route under load: a GET, or a request made by a wrk script.
struct Route {
    name: String,
    path: String,
    script: Option<String>,
    /// 409s are expected (concurrent appends to one stream), and counted, not refused.
    conflicts_expected: bool,
}

fn lua(s: &str) -> String {
    format!("[=[{s}]=]")
}

impl Route {
    fn get(name: &str, path: &str) -> Self {
        Route {
            name: name.into(),
            path: path.into(),
            script: None,
            conflicts_expected: false,
        }
    }

    fn post(name: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Self {
        let mut script = format!("wrk.method = \"POST\"\nwrk.body = {}\n", lua(body));
        for (k, v) in headers {
            script += &format!("wrk.headers[ {} ] = {}\n", lua(k), lua(v));
        }
        if !headers.iter().any(|(k, _)| *k == "content-type") {
            script += "wrk.headers[\"content-type\"] = \"application/json\"\n";
        }
        Route {
            name: name.into(),
            path: path.into(),
            script: Some(script),
            conflicts_expected: false,
        }
    }

    /// A binary-mode CloudEvent POSTed to a function's delivery path, as a Trigger sends
    /// it; each with its own id where `fresh_ids` (so a deduplicating function does its
    /// whole work every time).
    fn event(
        name: &str,
        function: &str,
        ty: &str,
        source: &str,
        body: &str,
        fresh_ids: bool,
    ) -> Self {
        let mut script = format!("wrk.method = \"POST\"\nwrk.body = {}\n", lua(body));
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "bench-1"),
            ("ce-source", source),
            ("ce-type", ty),
            ("content-type", "application/json"),
        ] {
            script += &format!("wrk.headers[ {} ] = {}\n", lua(k), lua(v));
        }
        if fresh_ids {
            script += "local prefix, n = \"bench-\" .. os.time() .. \"-\", 0\n\
                       request = function()\n  n = n + 1\n  wrk.headers[\"ce-id\"] = prefix .. n\n  return wrk.format()\nend\n";
        }
        Route {
            name: name.into(),
            path: format!("/.well-known/wasmfn/events/{function}"),
            script: Some(script),
            conflicts_expected: false,
        }
    }

    /// Deposits of 1 cent to a random account: an append to its stream in Redis, the event
    /// published and applied to the read model by the projection (in the same host).
    fn deposits() -> Self {
        let script = format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"amount_cents\":1}}'\nwrk.headers[\"content-type\"] = \"application/json\"\n\
             request = function()\n  return wrk.format(nil, \"/accounts/acc-\" .. math.random(0, {}) .. \"/deposits\")\nend\n",
            ACCOUNTS - 1
        );
        Route {
            name: "command-service: POST /accounts/{id}/deposits (event store append + projection)"
                .into(),
            path: "/accounts/acc-0/deposits".into(),
            script: Some(script),
            conflicts_expected: true,
        }
    }
}

/// Each route's req/s and p99 over the rounds; the ratio is to the first route's req/s
/// (or to `baseline` when given, measured on the other host of this run). Returns the
/// first route's median req/s.
fn load_rows(
    routes: &[Route],
    port: u16,
    work: &Path,
    rounds: u64,
    seconds: u64,
    baseline: Option<f64>,
    report: &mut Report,
) -> f64 {
    let mut figures: Vec<Vec<Load>> = routes.iter().map(|_| Vec::new()).collect();
    for route in routes {
        wrk(port, route, work, 1); // warm-up: first instances, caches, connections
    }
    for round in 0..rounds as usize {
        for i in 0..routes.len() {
            let i = (i + round) % routes.len();
            figures[i].push(wrk(port, &routes[i], work, seconds));
        }
    }
    let medians: Vec<f64> = figures
        .iter()
        .map(|f| median(f.iter().map(|l| l.rps).collect()))
        .collect();
    let base = baseline.unwrap_or(medians[0]);
    for (i, route) in routes.iter().enumerate() {
        let p99 = median(figures[i].iter().map(|l| l.p99_ms).collect());
        let conflicts: u64 = figures[i].iter().map(|l| l.non_2xx).sum();
        let total: u64 = figures[i].iter().map(|l| l.requests).sum();
        let mut figure = format!("{:.1}k ({p99:.2} ms)", medians[i] / 1e3);
        if route.conflicts_expected {
            figure += &format!(
                "; {:.2}% 409 (two appends to one stream at once)",
                conflicts as f64 * 100.0 / total.max(1) as f64
            );
        }
        let ratio = if i == 0 && baseline.is_none() {
            "1 (baseline)".to_string()
        } else {
            format!("{:.2}x hello", medians[i] / base)
        };
        report.row(&route.name, figure, ratio);
    }
    medians[0]
}

/// Orders placed under load, then every saga followed to its end: whole sagas per second.
/// A saga ends when the order service closes its order (completed, failed or compensated),
/// which it counts at `GET /orders`.
fn sagas(label: &str, port: u16, work: &Path, seconds: u64, hello: f64, report: &mut Report) {
    let closed = || -> u64 {
        let (status, body) = request(port, "GET", "/orders", &[], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["closed"]
            .as_u64()
            .unwrap()
    };
    let before = closed();
    let started = Instant::now();
    let route = Route::post("order saga: POST /orders", "/orders", &[], ORDER);
    let accepted = wrk(port, &route, work, seconds);
    // Settled: the count has not moved for a second.
    let (mut last, mut still_since) = (closed(), Instant::now());
    let settled = loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = closed();
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() > Duration::from_secs(1) {
            break still_since;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the sagas did not settle"
        );
    };
    // wrk counts the answers it read; an order placed as the run ended may be closed
    // without being counted there, never the other way round.
    let completed = last - before;
    assert!(
        completed >= accepted.requests,
        "{completed} orders closed for {} accepted: sagas were lost",
        accepted.requests
    );
    let per_second = completed as f64 / (settled - started).as_secs_f64();
    report.row(
        format!("{label}: POST /orders, accepted (202)"),
        format!("{:.1}k ({:.2} ms)", accepted.rps / 1e3, accepted.p99_ms),
        format!("{:.2}x hello", accepted.rps / hello),
    );
    report.row(
        format!("{label}: whole sagas completed per second"),
        format!(
            "{:.1}k/s ({completed} in {:.1} s)",
            per_second / 1e3,
            (settled - started).as_secs_f64()
        ),
        format!("{:.2}x hello", per_second / hello),
    );
}

struct Load {
    rps: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
}

fn wrk(port: u16, route: &Route, work: &Path, seconds: u64) -> Load {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", CLIENT_CPU, "wrk", "-t1", "--latency"])
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"));
    if let Some(script) = &route.script {
        let file = work.join(format!("{:x}.lua", fxhash(script)));
        std::fs::write(&file, script).unwrap();
        cmd.arg("-s").arg(file);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{}", route.path))
        .output()
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
            .map(str::to_string)
    };
    let non_2xx = field("Non-2xx or 3xx responses:").map_or(0, |n| n.parse().unwrap());
    assert!(
        non_2xx == 0 || route.conflicts_expected,
        "wrk saw non-2xx responses on {}:\n{text}",
        route.path
    );
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    let latency = field("99%").unwrap_or_else(|| panic!("no p99 in wrk's output:\n{text}"));
    Load {
        rps: field("Requests/sec:").unwrap().parse().unwrap(),
        p99_ms: wrk_ms(&latency),
        requests,
        non_2xx,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// One request on a fresh connection: the status and the body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the host");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    write!(s, "{head}\r\n{body}").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The release host, pinned to the server CPU, until dropped.
struct Host {
    child: Child,
    port: u16,
}

impl Host {
    fn start(root: &Path, manifest: &Path, data: &Path, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CPU])
            .arg(root.join("target/release/wasmfn"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--manifest",
            ])
            .arg(manifest)
            .arg("--data-dir")
            .arg(data)
            .arg("--cache-dir")
            .arg(data.join("cache"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the release host");
        let started = Instant::now();
        while get_status(port, "/.well-known/wasmfn/ready") != Some(200) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "wasmfn serve --manifest {} exited: {status}",
                    manifest.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the host did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Host { child, port }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` on a free port, until dropped; None without one on PATH.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(work: &Path) -> Option<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(work)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis { child, port })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
