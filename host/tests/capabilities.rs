//! Key-value stores shared between processes, through the spawned binary: a real
//! `redis-server` on a free port (skipped, saying so, where none is installed; `.ci/run`
//! installs it), and the embedded store's file shared by two hosts and kept across a
//! restart.

use std::time::{Duration, Instant};

use wasmfn_guest_artifacts as guests;

mod common;
use common::{RedisServer, Server, function, get, manifest, post};

fn counter_manifest(store: &str) -> String {
    format!(
        "{store}\n{}{}",
        function(
            "counter",
            guests::COUNTER,
            &["/counter/*"],
            "key_value_stores = [\"default\"]"
        ),
        function("hello", guests::HELLO, &["/hello"], ""),
    )
}

const REDIS_STORE: &str = "[key_value.default]\ntype = \"redis\"\nurl = { env = \"REDIS_URL\" }\n";

/// `total` increments of one counter, spread over `hosts`, 10 at a time.
async fn increment_over(hosts: &[&Server], total: usize) {
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let urls: Vec<String> = hosts.iter().map(|h| h.url("/counter/shared")).collect();
        tasks.push(tokio::spawn(async move {
            for i in (worker..total).step_by(10) {
                let r = post(&urls[i % urls.len()], "").await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_sharing_one_redis_store_count_every_increment_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_dir, path) = manifest(&counter_manifest(REDIS_STORE));
    let env = [("REDIS_URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::spawn(&path, &["--listen", "127.0.0.1:0"], &env);
    let b = Server::spawn(&path, &["--listen", "127.0.0.1:0"], &env);
    increment_over(&[&a, &b], 1000).await;
    for host in [&a, &b] {
        assert_eq!(get(&host.url("/counter/shared")).await.text(), "1000\n");
    }
}

/// `total` compare-and-swap additions through wasi:keyvalue@0.2.0-draft2, spread over
/// `hosts`, 10 at a time; the tries they took beyond one each.
async fn cas_add_over(hosts: &[&Server], total: usize) -> u64 {
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let urls: Vec<String> = hosts.iter().map(|h| h.url("/kv2/cas-add")).collect();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for i in (worker..total).step_by(10) {
                let r = post(&urls[i % urls.len()], "").await;
                assert_eq!(r.status, 200, "{}", r.text());
                retries += r.text().trim().parse::<u64>().unwrap() - 1;
            }
            retries
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    retries
}

/// Two hosts adding to one value by compare-and-swap, as Spin and wasmCloud guests do
/// through the second wasi:keyvalue draft: no addition is lost, on Redis (a script) and on
/// the embedded SQLite file both hosts open (a write transaction).
#[tokio::test(flavor = "multi_thread")]
async fn compare_and_swap_from_two_hosts_loses_no_write() {
    let draft2 = |store: &str| {
        format!(
            "{store}\n{}",
            function(
                "kv2",
                guests::TEST_KEYVALUE_DRAFT2,
                &["/kv2/*"],
                "key_value_stores = [\"default\"]"
            )
        )
    };
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut stores = vec![(draft2(""), Vec::new(), "the embedded store")];
    if let Some(redis) = &redis {
        stores.push((
            draft2(REDIS_STORE),
            vec![("REDIS_URL", redis.url())],
            "Redis",
        ));
    }
    for (text, env, name) in stores {
        let (_dir, path) = manifest(&text);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
        let a = Server::spawn(&path, &args, &env);
        let b = Server::spawn(&path, &args, &env);
        let retries = cas_add_over(&[&a, &b], 400).await;
        let r = post(&a.url("/kv2/cas-add"), "").await;
        let tries: u64 = r.text().trim().parse().unwrap();
        assert_eq!(tries, 1, "{name}: nothing else writes now");
        let r = get(&b.url("/kv2/count")).await;
        assert_eq!(r.text(), "401\n", "{name}: {retries} retries");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_going_away_fails_store_operations_not_the_host() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (_dir, path) = manifest(&counter_manifest(REDIS_STORE));
    let url = redis.url();
    let host = Server::spawn(&path, &["--listen", "127.0.0.1:0"], &[("REDIS_URL", &url)]);
    assert_eq!(post(&host.url("/counter/x"), "").await.text(), "1\n");

    let store_up = || async {
        let metrics = get(&host.url("/.well-known/wasmfn/metrics")).await.text();
        metrics
            .lines()
            .find(|l| l.starts_with("wasmfn_store_up{") && l.contains("store=\"default\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    assert_eq!(store_up().await, Some(1));

    redis.stop();
    let r = post(&host.url("/counter/x"), "").await;
    // The guest got an error from the store, and said retry: a broker would redeliver.
    r.assert_error(503, "store `default` is unavailable");
    // The outage is logged once and shows in the metrics.
    let log = host.wait_for_log("key-value store unavailable");
    assert!(log.contains("key-value store unavailable"), "{log}");
    assert_eq!(store_up().await, Some(0));
    assert_eq!(
        get(&host.url("/hello")).await.status,
        200,
        "the host keeps serving"
    );

    // Back (empty, as a restarted cache would be): the same host uses it again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post(&host.url("/counter/x"), "").await;
        if r.status == 200 {
            assert_eq!(r.text(), "1\n");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = host.wait_for_log("key-value store available again");
    assert!(log.contains("key-value store available again"), "{log}");
    assert_eq!(store_up().await, Some(1));
    assert_eq!(
        log.matches("key-value store unavailable").count(),
        1,
        "one line per outage, however many operations failed: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_store_is_shared_by_two_hosts_and_kept_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (_dir, path) = manifest(&counter_manifest(""));
    let data_dir = data.path().to_str().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
    {
        let a = Server::spawn(&path, &args, &[]);
        let b = Server::spawn(&path, &args, &[]);
        // Two processes on one SQLite file: increments are transactions that take the
        // write lock, so none is lost.
        increment_over(&[&a, &b], 200).await;
        assert_eq!(get(&b.url("/counter/shared")).await.text(), "200\n");
    }
    let again = Server::spawn(&path, &args, &[]);
    assert_eq!(get(&again.url("/counter/shared")).await.text(), "200\n");
    assert!(data.path().join("default.sqlite").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_is_down_at_start_does_not_stop_the_host() {
    // Nothing listens on this port: the store cannot connect, and the host starts and
    // serves anyway; only the store's operations fail, retryably.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let (_dir, path) = manifest(&counter_manifest(REDIS_STORE));
    let host = Server::spawn(&path, &["--listen", "127.0.0.1:0"], &[("REDIS_URL", &url)]);
    assert_eq!(get(&host.url("/hello")).await.status, 200);
    post(&host.url("/counter/x"), "")
        .await
        .assert_error(503, "store `default` is unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_outbound_request_is_logged_with_function_request_and_authority() {
    let (_dir, path) = manifest(&function(
        "caller",
        guests::OUTBOUND_CALL,
        &["/call"],
        "allowed_outbound_hosts = [\"http://127.0.0.1:1\"]",
    ));
    let host = Server::spawn(&path, &["--listen", "127.0.0.1:0"], &[]);
    let request = http::Request::get(host.url("/call?url=http://denied.example:8080/x"))
        .header("x-request-id", "req-denied-1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = common::send(&common::client(false), request).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let log = host.wait_for_log("outbound request denied");
    let line = log
        .lines()
        .find(|l| l.contains("outbound request denied"))
        .unwrap_or_else(|| panic!("no denial logged:\n{log}"));
    for needle in ["caller", "req-denied-1", "denied.example:8080"] {
        assert!(line.contains(needle), "{needle} missing from: {line}");
    }
}
