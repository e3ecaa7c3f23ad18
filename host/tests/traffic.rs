//! In-host traffic between versions of a function, against the spawned binary: the split
//! over 10,000 requests, sticky users, a tagged canary at weight 0, weights switched live
//! (admin listener and SIGHUP) under load with no failed request, and `wasmfn rollout`
//! rolling back a failing release on its own and completing a healthy one.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Server, client};

/// `api` as `blue` (hello, "Blue") and `green` (the component given, "Green"; tag `canary`).
fn manifest_text(
    blue: u32,
    green: u32,
    green_component: &str,
    green_vars: &str,
    extra: &str,
) -> String {
    format!(
        "[[functions]]\nname = \"api\"\nroutes = [\"/api\"]\n{extra}\nversions = [\n\
         {{ name = \"blue\", component = {h:?}, weight = {blue}, variables = {{ greeting = \"Blue\" }} }},\n\
         {{ name = \"green\", component = {green_component:?}, weight = {green}, tag = \"canary\", variables = {{ greeting = \"Green\"{green_vars} }} }},\n]\n",
        h = guests::HELLO
    )
}

fn start(text: &str) -> (tempfile::TempDir, std::path::PathBuf, Server, String) {
    let (dir, path) = common::manifest(text);
    let server = Server::start_with(&path, &["--admin", "127.0.0.1:0"]);
    let log = server.wait_for_log("admin listening");
    let admin = log
        .lines()
        .find(|l| l.contains("admin listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"))
        .to_string();
    (dir, path, server, format!("http://{admin}"))
}

/// Sends `n` GETs over `connections` keep-alive connections; returns how many each
/// version answered (by the response header) and the failures.
async fn count_versions(
    url: &str,
    n: usize,
    connections: usize,
    headers: &[(&str, &str)],
) -> (u64, u64, Vec<String>) {
    let per = n / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let url = url.to_string();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            tokio::spawn(async move {
                let client = client(false);
                let (mut blue, mut green, mut failures) = (0, 0, vec![]);
                for _ in 0..per {
                    let mut request = http::Request::get(&url);
                    for (k, v) in &headers {
                        request = request.header(k, v);
                    }
                    let reply =
                        common::send(&client, request.body(Full::new(Bytes::new())).unwrap()).await;
                    match reply.header("x-wasmfn-version") {
                        Some("blue") if reply.status == 200 => blue += 1,
                        Some("green") if reply.status == 200 => green += 1,
                        other => {
                            failures.push(format!("{} {other:?} {}", reply.status, reply.text()))
                        }
                    }
                }
                (blue, green, failures)
            })
        })
        .collect();
    let (mut blue, mut green, mut failures) = (0, 0, vec![]);
    for task in tasks {
        let (b, g, f) = task.await.unwrap();
        blue += b;
        green += g;
        failures.extend(f);
    }
    (blue, green, failures)
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_requests_split_within_two_points_of_the_weights() {
    let (_dir, _path, server, _admin) = start(&manifest_text(80, 20, guests::HELLO, "", ""));
    let (blue, green, failures) = count_versions(&server.url("/api"), 10_000, 4, &[]).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(blue + green, 10_000);
    let share = green as f64 / 100.0;
    assert!(
        (18.0..=22.0).contains(&share),
        "green answered {share}% at weight 20"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_user_lands_on_one_version_and_a_tester_reaches_the_canary() {
    let text = manifest_text(50, 50, guests::HELLO, "", "sticky = { cookie = \"uid\" }");
    let (_dir, _path, server, admin) = start(&text);
    let url = server.url("/api");
    let mut seen = [0u32; 2];
    for user in 0..100 {
        let cookie = format!("theme=dark; uid=u{user}");
        let (blue, green, failures) = count_versions(&url, 5, 1, &[("cookie", &cookie)]).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert!(
            blue == 5 || green == 5,
            "user u{user} saw both versions: {blue} blue, {green} green"
        );
        seen[usize::from(green == 5)] += 1;
    }
    assert!(
        seen.iter().all(|&n| n >= 25),
        "users spread over both versions: {seen:?}"
    );

    // Weight 0 for green: the tag still reaches it, as a Knative tag URL does.
    set_weights(&admin, "api", r#"{"blue": 100}"#).await;
    let (blue, green, _) = count_versions(&url, 20, 1, &[("x-wasmfn-version", "canary")]).await;
    assert_eq!((blue, green), (0, 20));
    let (blue, green, _) = count_versions(&url, 20, 1, &[("cookie", "uid=u1")]).await;
    assert_eq!(
        (blue, green),
        (20, 0),
        "at 100/0 every sticky user is on blue"
    );
}

async fn set_weights(admin: &str, function: &str, body: &str) -> common::Reply {
    let request = http::Request::put(format!("{admin}/functions/{function}/weights"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    common::send(&client(false), request).await
}

/// Weights switched ten times through the admin listener and twice by SIGHUP, under a
/// steady load: no request fails, and each answer comes from a version that existed.
#[tokio::test(flavor = "multi_thread")]
async fn switching_weights_under_load_drops_no_request() {
    let (_dir, path, server, admin) = start(&manifest_text(100, 0, guests::HELLO, "", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, sent) = (server.url("/api"), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let client = client(false);
                let mut failures = vec![];
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let request = http::Request::get(&url)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match client.request(request).await {
                        Ok(r) if r.status() == 200 => {
                            let body = r.into_body().collect().await.unwrap().to_bytes();
                            if body != "Blue, world!\n" && body != "Green, world!\n" {
                                failures.push(format!("{body:?}"));
                            }
                        }
                        Ok(r) => failures.push(r.status().to_string()),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    for i in 0..10u32 {
        let green = (i + 1) * 10;
        let r = set_weights(
            &admin,
            "api",
            &format!(r#"{{"blue": {}, "green": {green}}}"#, 100 - green),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i == 4 || i == 9 {
            std::fs::write(&path, manifest_text(50, 50, guests::HELLO, "", "")).unwrap();
            let status = Command::new("kill")
                .args(["-HUP", &server.pid().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = vec![];
    for loader in loaders {
        failures.extend(loader.await.unwrap());
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 200, "only {sent} requests sent");
    // A switch takes effect from the next request: all of them go where the weights say.
    for (weights, answer) in [
        (r#"{"blue": 0, "green": 100}"#, "Green, world!\n"),
        (r#"{"blue": 100, "green": 0}"#, "Blue, world!\n"),
    ] {
        assert_eq!(set_weights(&admin, "api", weights).await.status, 200);
        for _ in 0..20 {
            assert_eq!(
                common::get(&server.url("/api")).await.text(),
                answer,
                "{weights}"
            );
        }
    }
    let r = set_weights(&admin, "api", r#"{"blue": 60, "green": 30}"#).await;
    assert_eq!(r.status, 400, "weights summing to 90 are refused");
    assert!(r.text().contains("sum to 90"), "{}", r.text());
    let r = set_weights(&admin, "nope", r#"{"blue": 100}"#).await;
    assert_eq!(r.status, 404);
}

/// Runs `wasmfn rollout` under a steady load against `admin`; returns its success and
/// output, and the weights afterwards.
async fn rollout_under_load(server: &Server, admin: &str) -> (bool, String, serde_json::Value) {
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (server.url("/api"), stop.clone());
            tokio::spawn(async move {
                let client = client(false);
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(&url)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    if let Ok(r) = client.request(request).await {
                        let _ = r.into_body().collect().await;
                    }
                }
            })
        })
        .collect();
    let admin_url = admin.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wasmfn"))
            .args([
                "rollout",
                "api",
                "--to",
                "green",
                "--steps",
                "10,50,100",
                "--interval",
                "1s",
                // What these tests judge is the 5xx gate and the steps: the latency gate
                // compares wall-clock p99s of ~1 ms, which a loaded two-core machine
                // swings past 2x (a healthy green was rolled back at 2.49 ms vs 1.07 ms).
                "--max-p99-ratio",
                "50",
                "--admin",
            ])
            .arg(&admin_url)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }
    let request = http::Request::get(format!("{admin}/functions"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let weights = common::send(&client(false), request).await.json();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, weights)
}

fn weight(weights: &serde_json::Value, version: &str) -> u64 {
    weights["functions"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .and_then(|v| v["weight"].as_u64())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_of_a_release_failing_a_fifth_of_requests_rolls_back_on_its_own() {
    let text = manifest_text(100, 0, guests::TEST_FLAKY, ", fail_percent = \"20\"", "");
    let (_dir, _path, server, admin) = start(&text);
    let (ok, output, weights) = rollout_under_load(&server, &admin).await;
    assert!(!ok, "the rollout should fail:\n{output}");
    assert!(
        output.contains("rolled back") && output.contains("5xx rate"),
        "{output}"
    );
    assert_eq!(
        (weight(&weights, "blue"), weight(&weights, "green")),
        (100, 0),
        "{weights}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_of_a_healthy_release_completes() {
    let text = manifest_text(100, 0, guests::HELLO, "", "");
    let (_dir, _path, server, admin) = start(&text);
    let (ok, output, weights) = rollout_under_load(&server, &admin).await;
    assert!(ok, "{output}");
    assert!(
        output.contains("step 50%") && output.contains("100% on green"),
        "{output}"
    );
    assert_eq!(
        (weight(&weights, "blue"), weight(&weights, "green")),
        (0, 100),
        "{weights}"
    );
}

#[test]
fn the_admin_listener_binds_loopback_only() {
    let (_dir, path) = common::manifest(&manifest_text(100, 0, guests::HELLO, "", ""));
    let out = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:0",
            "--manifest",
        ])
        .arg(&path)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_answers_only_this_machine_and_drops_slow_headers() {
    let text = format!(
        "[server]\nheader_timeout = \"1s\"\n\n{}",
        manifest_text(80, 20, guests::HELLO, "", "")
    );
    let (_dir, _path, _server, admin) = start(&text);
    let put = |headers: &[(&str, &str)]| {
        let mut request = http::Request::put(format!("{admin}/functions/api/weights"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from_static(
                br#"{"blue": 50, "green": 50}"#,
            )))
            .unwrap();
        async move { common::send(&client(false), request).await }
    };
    let json = ("content-type", "application/json");
    // A page elsewhere, through a name rebound to 127.0.0.1, or across sites: refused.
    let r = put(&[json, ("host", "attacker.example")]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = put(&[json, ("origin", "http://attacker.example")]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = put(&[("content-type", "text/plain")]).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let reload = http::Request::post(format!("{admin}/reload"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(common::send(&client(false), reload).await.status, 415);
    // Nothing of those was applied; the same change, as a local client sends it, is.
    let listed = common::get(&format!("{admin}/functions")).await.json();
    assert_eq!(
        listed["functions"][0]["versions"][0]["weight"], 80,
        "{listed}"
    );
    let r = put(&[json, ("origin", "http://localhost:9901")]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Headers never finished: the connection is closed at the header timeout.
    let addr = admin.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    slow.write_all(b"GET /functions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the half-sent request was still open after 5 s"
    );
}
