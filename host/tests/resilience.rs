//! Resilience: limits, backpressure and containment. Each test drives a real guest into a
//! limit and checks what a client sees (the status, `Retry-After`) and that the host is
//! whole afterwards. In process first, then the spawned binary for what needs sockets
//! (connection limits, slow clients, draining under load).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmfn::engine::{CacheDir, Engine, EngineOptions};
use wasmfn::server::App;
use wasmfn::testing;
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Reply, Server, function, get, manifest};

fn engine(pool_instances: u32, queue_timeout: Duration) -> Engine {
    testing::engine(EngineOptions {
        pool_instances,
        queue_timeout,
        cache: Some(CacheDir::new(common::cache_dir()).unwrap()),
        ..EngineOptions::default()
    })
}

fn load(text: &str, engine: &Engine) -> Arc<App> {
    testing::app(text, engine)
}

async fn call(app: &App, uri: &str) -> Reply {
    send(
        app,
        http::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

async fn send<B>(app: &App, request: http::Request<B>) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmfn::engine::BoxError>,
{
    testing::respond(app, request).await.into()
}

/// `wasmfn_refused_total{reason}` from the app's own metrics.
fn refused(app: &App, reason: &str) -> u64 {
    let needle = format!("wasmfn_refused_total{{reason=\"{reason}\"}} ");
    app.metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

fn in_flight(app: &App) -> i64 {
    app.metrics()
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix("wasmfn_instances_in_flight ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap()
}

// Two workers, four guests spinning on the CPU: if a spinning guest held its thread until
// its deadline, hello could not run until two of them had been stopped. The order is what
// is checked (hello answers while every spinner still runs); the spinners' deadline is
// long enough that no loaded machine could take that long to answer hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_does_not_hold_up_other_functions() {
    let engine = engine(32, Duration::from_secs(1));
    let app = load(
        &(function("spin", guests::TEST_SPIN, &["/spin"], "timeout = \"10s\"")
            + &function("hello", guests::HELLO, &["/hello"], "")),
        &engine,
    );
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, "/spin").await })
        })
        .collect();
    // Let every spinner get onto a worker (they cannot all, if spinning holds a thread).
    let deadline = Instant::now() + Duration::from_secs(2);
    while in_flight(&app) < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hello = call(&app, "/hello").await;
    assert_eq!(hello.status, 200);
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "hello had to wait for a spinning guest's deadline"
    );
    for spinner in spinners {
        assert_eq!(spinner.await.unwrap().status, 504);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_failures_leak_no_instance_slot() {
    const POOL: u32 = 4;
    let engine = engine(POOL, Duration::from_secs(5));
    let app = load(
        &(function("trap", guests::TEST_TRAP, &["/trap"], "")
            + &function("oom", guests::TEST_OOM, &["/oom"], "memory = \"4MiB\"")
            + &function("spin", guests::TEST_SPIN, &["/spin"], "timeout = \"20ms\"")
            + &function("probe", guests::TEST_PROBE, &["/probe/*"], "")
            + &function("hello", guests::HELLO, &["/hello"], "")),
        &engine,
    );
    let kinds = [
        ("/trap", 500),
        ("/oom", 500),
        ("/trap", 500),
        ("/spin", 504),
    ];
    let mut statuses = std::collections::BTreeMap::new();
    let mut failures = futures_util::stream::iter((0..1000).map(|i| {
        let app = app.clone();
        let (path, expected) = kinds[i % kinds.len()];
        async move { (path, expected, call(&app, path).await.status) }
    }))
    .buffer_unordered(POOL as usize);
    while let Some((path, expected, status)) = failures.next().await {
        assert_eq!(status, expected, "{path}");
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.values().sum::<u32>(), 1000, "{statuses:?}");

    assert_eq!(
        engine.free_instance_slots(),
        POOL,
        "a slot was not returned"
    );
    assert_eq!(in_flight(&app), 0);
    // The pool itself has every slot: as many sleeping guests as it holds run at once.
    let sleepers =
        futures_util::future::join_all((0..POOL).map(|_| call(&app, "/probe/sleep?ms=200"))).await;
    assert!(sleepers.iter().all(|r| r.status == 200), "{sleepers:?}");
    assert_eq!(refused(&app, "instances"), 0);
    assert_eq!(call(&app, "/hello").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_full_limit_answers_503_with_retry_after_never_500() {
    // A function's concurrency: the second caller waits the queue timeout, then 503.
    let engine = engine(32, Duration::from_millis(100));
    let app = load(
        &function(
            "probe",
            guests::TEST_PROBE,
            &["/probe/*"],
            "concurrency = 1",
        ),
        &engine,
    );
    let busy = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "/probe/sleep?ms=1500").await }
    });
    while in_flight(&app) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let r = call(&app, "/probe/sleep?ms=0").await;
    r.assert_error(503, "function `probe`'s concurrency is at its limit of 1");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "it waited before refusing"
    );
    assert_eq!(refused(&app, "concurrency"), 1);
    assert_eq!(busy.await.unwrap().status, 200);
    // A slot that frees up within the wait is taken: queueing, not failing.
    let engine2 = self::engine(32, Duration::from_secs(10));
    let app2 = load(
        &function(
            "probe",
            guests::TEST_PROBE,
            &["/probe/*"],
            "concurrency = 1",
        ),
        &engine2,
    );
    let (a, b) = tokio::join!(
        call(&app2, "/probe/sleep?ms=300"),
        call(&app2, "/probe/sleep?ms=0")
    );
    assert_eq!((a.status, b.status), (200, 200));

    // The instance pool: two slots, three callers.
    let engine = self::engine(2, Duration::from_millis(100));
    let app = load(
        &function("probe", guests::TEST_PROBE, &["/probe/*"], ""),
        &engine,
    );
    let results = futures_util::future::join_all([
        call(&app, "/probe/sleep?ms=1000"),
        call(&app, "/probe/sleep?ms=1000"),
        call(&app, "/probe/sleep?ms=0"),
    ])
    .await;
    let mut statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503], "{results:?}");
    let refusal = results.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(refusal.header("retry-after"), Some("1"));
    assert!(
        refusal.text().contains("the instance pool"),
        "{}",
        refusal.text()
    );
    // A guest may still be tearing down after its response was read; then its slot is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.free_instance_slots() != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.free_instance_slots(), 2);

    // The host's in-flight requests.
    let engine = self::engine(32, Duration::from_secs(1));
    let app = load(
        &("[server]\nmax_in_flight = 1\nqueue_timeout = \"100ms\"\n\n".to_string()
            + &function("probe", guests::TEST_PROBE, &["/probe/*"], "")),
        &engine,
    );
    let (a, b) = tokio::join!(call(&app, "/probe/sleep?ms=1000"), async {
        common::until_instances(&app, 1).await;
        call(&app, "/probe/sleep?ms=0").await
    });
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 503, "{}", b.text());
    assert_eq!(b.header("retry-after"), Some("1"));
    assert_eq!(refused(&app, "in_flight"), 1);
    // Health checks are not requests to a function and are never refused.
    let (a, health) = tokio::join!(call(&app, "/probe/sleep?ms=500"), async {
        common::until_instances(&app, 1).await;
        call(&app, "/.well-known/wasmfn/ready").await
    });
    assert_eq!((a.status, health.status), (200, 200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_max_body_is_413_whether_announced_or_streamed() {
    let engine = engine(32, Duration::from_secs(1));
    let app = load(
        &function("echo", guests::ECHO, &["/echo"], "max_body = \"1KiB\""),
        &engine,
    );
    let post = |body: Vec<u8>, length: Option<usize>| {
        let mut request = http::Request::post("/echo");
        if let Some(n) = length {
            request = request.header("content-length", n);
        }
        request.body(Full::new(Bytes::from(body))).unwrap()
    };
    assert_eq!(
        send(&app, post(vec![b'x'; 1024], Some(1024))).await.status,
        200
    );

    // Announced: refused before the guest runs.
    let r = send(&app, post(vec![b'x'; 2048], Some(2048))).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("max_body"), "{}", r.text());

    // Streamed without a length (chunked): cut off at the limit, and the guest's answer
    // replaced by the same 413. The stream would go on for a mebibyte.
    let chunks = futures_util::stream::iter((0..1024).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![b'y'; 1024])))
    }));
    let r = send(
        &app,
        http::Request::post("/echo")
            .body(StreamBody::new(chunks))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(refused(&app, "body_too_large"), 2);
}

/// Reads until the server closes the connection or `within` passes; returns what was read
/// and whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_disconnected_and_oversized_uploads_refused_unread() {
    let (_dir, path) = manifest(
        &("[server]\nheader_timeout = \"300ms\"\nidle_timeout = \"600ms\"\n\n".to_string()
            + &function("hello", guests::HELLO, &["/hello"], "")
            + &function("echo", guests::ECHO, &["/echo"], "max_body = \"1MiB\"")),
    );
    let server = Server::start(&path);
    let generous = Duration::from_secs(20);

    // Slowloris: half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut slow, generous).await;
    assert!(
        closed && seen.is_empty(),
        "a half-sent head was not cut off: {seen:?}"
    );

    // A connection that never sends anything.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, generous).await;
    assert!(closed, "a silent connection was kept open");

    // Keep-alive after a response: served, then closed once idle.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut idle, generous).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(closed, "an idle keep-alive connection was kept open");

    // 100 MiB announced, 1 MiB allowed: 413 at once, without the body being sent.
    let mut upload = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    upload
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 104857600\r\n\r\nabc")
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut upload, generous).await;
    assert!(seen.starts_with("HTTP/1.1 413"), "{seen}");
    assert!(seen.contains("max_body"), "{seen}");
    assert!(
        closed,
        "the connection is closed instead of reading 100 MiB"
    );

    let metrics = get(&server.url("/.well-known/wasmfn/metrics")).await.text();
    for reason in ["header_timeout", "idle_timeout", "body_too_large"] {
        assert!(
            metrics.contains(&format!("wasmfn_refused_total{{reason=\"{reason}\"}}")),
            "{reason} not counted:\n{metrics}"
        );
    }
    assert_eq!(get(&server.url("/hello")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_are_answered_503_with_retry_after() {
    let (_dir, path) = manifest(
        &("[server]\nmax_connections = 2\n\n".to_string()
            + &function("hello", guests::HELLO, &["/hello"], "")),
    );
    let server = Server::start(&path);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut third, Duration::from_secs(20)).await;
    assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("retry-after: 1"),
        "{seen}"
    );
    assert!(closed);
    drop(held);
    // Slots come back when connections close.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (seen, _) = read_until_closed(&mut c, Duration::from_secs(20)).await;
        if seen.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connection slots never came back: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a client saw for one request of the drain test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Status(u16),
    /// The connection was refused: the request never reached the host.
    Refused,
    /// Anything else: a request the host may have had and did not answer.
    Broken,
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_drops_no_request_that_reached_the_host() {
    let (_dir, path) = manifest(
        &(function("hello", guests::HELLO, &["/hello"], "")
            + &function("probe", guests::TEST_PROBE, &["/probe/*"], "")),
    );
    let server = Server::start(&path);
    let signalled: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (base, signalled) = (server.url(""), signalled.clone());
            tokio::spawn(async move {
                let client = common::client(false);
                let mut seen = Vec::new();
                // Half the clients ask for slow responses, so requests are mid-flight
                // when the signal comes.
                let path = if i % 2 == 0 {
                    "/hello"
                } else {
                    "/probe/sleep?ms=150"
                };
                loop {
                    let started = Instant::now();
                    let request = http::Request::get(format!("{base}{path}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let outcome = match client.request(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.into_body().collect().await {
                                Ok(_) => Outcome::Status(status),
                                Err(_) => Outcome::Broken,
                            }
                        }
                        Err(e) if e.is_connect() => Outcome::Refused,
                        Err(_) => Outcome::Broken,
                    };
                    let before_signal = signalled.get().is_none_or(|at| started < *at);
                    seen.push((before_signal, outcome));
                    if outcome == Outcome::Refused {
                        return seen;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signalled.set(Instant::now()).unwrap();
    server.sigterm();

    let mut tally = std::collections::BTreeMap::<(bool, Outcome), u32>::new();
    for client in clients {
        for key in client.await.unwrap() {
            *tally.entry(key).or_default() += 1;
        }
    }
    eprintln!("drain under load, (sent before SIGTERM, outcome) -> count: {tally:?}");
    // A request sent after the signal may find the listener closed (refused) or, rarely,
    // its keep-alive connection closed before the host read it: HTTP/1.1 lets a client
    // retry those, and the host never had them. Everything sent before must be answered.
    let dropped: u32 = tally
        .iter()
        .filter(|((before, outcome), _)| *before && *outcome != Outcome::Status(200))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(dropped, 0, "requests lost in the drain: {tally:?}");
    assert!(
        tally
            .get(&(true, Outcome::Status(200)))
            .copied()
            .unwrap_or(0)
            > 100,
        "there was load: {tally:?}"
    );
    assert_eq!(server.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_no_host_secret_and_its_output_is_bounded_in_the_log() {
    let (_dir, path) = manifest(&function("probe", guests::TEST_PROBE, &["/probe/*"], ""));
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("WASMFN_TEST_SECRET", "hunter2")],
    );
    let r = get(&server.url("/probe/sandbox")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["env"]["allowed"], false, "{}", r.text());
    assert!(!r.text().contains("hunter2"));

    // 1 MiB printed: the request is answered, the log gets at most the 16 KiB kept.
    let request = http::Request::get(server.url("/probe/print?bytes=1048576"))
        .header("x-request-id", "chatty-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = common::send(&common::client(false), request).await;
    assert_eq!(r.text(), "printed 1048576 bytes\n");
    let log = server.wait_for_log("printed 1048576 bytes\"");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("guest output") && l.contains("chatty-1"))
        .collect();
    assert_eq!(lines.len(), 2, "stdout and stderr, tagged:\n{log}");
    let stdout = lines
        .iter()
        .find(|l| l.contains("stream=\"stdout\""))
        .unwrap();
    assert!(
        stdout.contains("truncated=true") && stdout.contains("function=\"probe\""),
        "{}",
        &stdout[..200]
    );
    assert!(
        stdout.len() < 20 * 1024,
        "the log line is bounded: {} bytes",
        stdout.len()
    );
}
