//! The chaos tier: the spawned host under a steady mixed load (HTTP, CloudEvents, a
//! key-value store on a real Redis, a SQL event store on a real PostgreSQL) while Redis is
//! killed and restarted, paused with SIGSTOP and resumed, PostgreSQL restarted, the host
//! reloaded with SIGHUP, and finally stopped with SIGTERM. Every request is counted: each
//! must get a 2xx with its whole body, or a 5xx that says why (a JSON error, or
//! `Retry-After`); none may hang past its deadline. About 40 s; skipped, saying so, without
//! Redis or PostgreSQL (CI installs both).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn_guest_artifacts as guests;

mod common;
use common::{PostgresServer, RedisServer, Server, client, function, manifest};

/// The functions' timeout: a request answered later than this (plus slack) hung.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What one request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// 2xx with the body it should have.
    Ok,
    /// 5xx saying why (the host's JSON error, or the guest's own words), or with
    /// Retry-After.
    Refused,
    /// Anything else: a 2xx with a wrong or cut body, a 5xx without a reason, a 4xx.
    Wrong,
    /// No answer within the deadline.
    Hung,
    /// The connection failed (only while the host stops).
    Transport,
}

struct Tally {
    outcomes: BTreeMap<(&'static str, Outcome), u64>,
    longest: Duration,
    wrong: Vec<String>,
}

/// What a 2xx body of a kind must be.
type Expect = Box<dyn Fn(&str) -> bool + Send>;

async fn one(kind: &'static str, base: &str, n: u64) -> (Outcome, Duration, String) {
    let (request, expect): (_, Expect) = match kind {
        "http" => (
            http::Request::get(format!("{base}/hello"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Box::new(|b: &str| b.starts_with("Hello")),
        ),
        "kv" => (
            http::Request::post(format!("{base}/counter/chaos"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Box::new(|b: &str| b.trim_end().parse::<u64>().is_ok()),
        ),
        "event" => (
            http::Request::post(format!("{base}/"))
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("chaos-{n}"))
                .header("ce-source", "/chaos")
                .header("ce-type", "chaos.ping")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!("{{\"n\":{n}}}"))))
                .unwrap(),
            Box::new(move |b: &str| b.contains(&format!("\"n\":{n}")) || b.is_empty()),
        ),
        _ => (
            http::Request::post(format!("{base}/events/chaos-{}?version=1&type=t", n))
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
            Box::new(|b: &str| b.starts_with("appended")),
        ),
    };
    let started = Instant::now();
    let sent = tokio::time::timeout(TIMEOUT + Duration::from_secs(5), async {
        let response = client(false).request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes());
        Ok::<_, hyper_util::client::legacy::Error>((parts, body))
    })
    .await;
    let elapsed = started.elapsed();
    let outcome = match sent {
        Err(_) => (Outcome::Hung, String::new()),
        Ok(Err(e)) => (Outcome::Transport, e.to_string()),
        Ok(Ok((parts, Err(e)))) => (Outcome::Wrong, format!("{} body cut: {e}", parts.status)),
        Ok(Ok((parts, Ok(body)))) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let status = parts.status.as_u16();
            // The host's own refusals are JSON; a guest's (the Spin app's) its own text.
            let reason = !text.trim().is_empty() || parts.headers.contains_key("retry-after");
            match status {
                200..=299 if expect(&text) => (Outcome::Ok, text),
                500..=599 if reason => (Outcome::Refused, text),
                _ => (Outcome::Wrong, format!("{status} {text}")),
            }
        }
    };
    (outcome.0, elapsed, outcome.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_load_survives_redis_and_postgres_going_away_reloads_and_sigterm() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let Some(mut pg) = PostgresServer::start() else {
        return;
    };
    let text = format!(
        "[key_value.default]\ntype = \"redis\"\nurl = {{ env = \"REDIS_URL\" }}\n\n{}{}{}{}",
        function("hello", guests::HELLO, &["/hello"], "timeout = \"5s\""),
        function(
            "counter",
            guests::COUNTER,
            &["/counter/*"],
            "timeout = \"5s\"\nkey_value_stores = [\"default\"]"
        ),
        function(
            "echo",
            guests::EVENT_ECHO,
            &[],
            "timeout = \"5s\"\nevents = [{}]"
        ),
        function(
            "events",
            guests::SPIN_EVENTS,
            &["/events/*"],
            &format!(
                "timeout = \"5s\"\nallowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]\nvariables = {{ database_url = \"{}\" }}",
                pg.port,
                pg.url()
            ),
        ),
    );
    let (_dir, path) = manifest(&text);
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("REDIS_URL", &redis.url())],
    );
    let base = server.url("");
    let base = base.trim_end_matches('/').to_string();
    let r = client(false)
        .request(
            http::Request::post(format!("{base}/events/setup"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The load: eight clients, each request in turn of the four kinds.
    let running = Arc::new(AtomicBool::new(true));
    // Once the host is told to stop, a refused connection is what is promised.
    let stopping = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally {
        outcomes: BTreeMap::new(),
        longest: Duration::ZERO,
        wrong: Vec::new(),
    }));
    let kinds = ["http", "kv", "event", "sql"];
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (running, stopping, tally, base) = (
                running.clone(),
                stopping.clone(),
                tally.clone(),
                base.clone(),
            );
            tokio::spawn(async move {
                let mut n = w * 1_000_000;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    let kind = kinds[(n % 4) as usize];
                    let (outcome, elapsed, detail) = one(kind, &base, n).await;
                    if outcome == Outcome::Transport && stopping.load(Ordering::Relaxed) {
                        // The host has stopped listening, as SIGTERM promises.
                        break;
                    }
                    let mut t = tally.lock().unwrap();
                    *t.outcomes.entry((kind, outcome)).or_default() += 1;
                    t.longest = t.longest.max(elapsed);
                    let failed =
                        matches!(outcome, Outcome::Wrong | Outcome::Hung | Outcome::Transport);
                    if failed && t.wrong.len() < 20 {
                        t.wrong.push(format!("{kind}: {outcome:?} {detail}"));
                    }
                }
            })
        })
        .collect();

    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    pause(3).await;
    redis.stop(); // killed
    pause(3).await;
    redis.restart();
    pause(3).await;
    redis.signal("STOP"); // paused: commands time out
    pause(4).await;
    redis.signal("CONT");
    pause(3).await;
    pg.stop();
    pause(2).await;
    pg.restart();
    pause(3).await;
    for _ in 0..3 {
        std::process::Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        pause(1).await;
    }
    pause(3).await;
    // SIGTERM under load: requests in flight finish; new connections are refused.
    stopping.store(true, Ordering::Relaxed);
    server.sigterm();
    pause(2).await;
    running.store(false, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let status = server.wait();

    let t = tally.lock().unwrap();
    let mut by_outcome: BTreeMap<Outcome, u64> = BTreeMap::new();
    for ((_, outcome), n) in &t.outcomes {
        *by_outcome.entry(*outcome).or_default() += n;
    }
    let total: u64 = by_outcome.values().sum();
    eprintln!(
        "chaos: {total} requests, {by_outcome:?}, by kind {:?}, longest {:?}",
        t.outcomes, t.longest
    );
    assert_eq!(status, Some(0), "the host exits cleanly on SIGTERM");
    assert!(
        t.wrong.is_empty(),
        "requests that hung or ended wrong: {:#?}",
        t.wrong
    );
    assert!(
        t.longest < TIMEOUT + Duration::from_secs(2),
        "a request took {:?}",
        t.longest
    );
    for kind in kinds {
        assert!(
            t.outcomes.get(&(kind, Outcome::Ok)).copied().unwrap_or(0) > 10,
            "{kind} was served between the faults: {:?}",
            t.outcomes
        );
    }
    assert!(
        by_outcome.get(&Outcome::Refused).copied().unwrap_or(0) > 0,
        "the faults were seen: {by_outcome:?}"
    );
}
