//! The real `wasmfn` binary, spawned on port 0 and driven by a real HTTP client: what a user
//! and Knative see, including start-up errors and exit codes.

use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Server, function, get, manifest, post};

fn wasmfn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// Runs `wasmfn serve` on `text`, which must refuse to start; returns what it said and
/// the manifest's path.
fn serve_refuses(text: &str) -> (String, std::path::PathBuf) {
    let (_dir, path) = manifest(text);
    let out = wasmfn(&[
        "serve",
        "--manifest",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        !out.status.success(),
        "wasmfn serve started on a manifest it should refuse"
    );
    (String::from_utf8_lossy(&out.stderr).into_owned(), path)
}

fn examples_and_failures() -> String {
    [
        function(
            "hello",
            guests::HELLO,
            &["/hello"],
            "variables = { greeting = \"Hej\" }",
        ),
        function("echo", guests::ECHO, &["/echo", "/echo/*"], ""),
        function("trap", guests::TEST_TRAP, &["/trap"], ""),
        function("spin", guests::TEST_SPIN, &["/spin"], "timeout = \"300ms\""),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_http1_and_h2c_and_round_trips_one_mebibyte() {
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);

    let r = get(&server.url("/hello?name=Ada")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hej, Ada!\n"));

    let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let r = post(&server.url("/echo"), body.clone()).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "1 MiB came back altered ({} bytes)",
        r.body.len()
    );

    // h2c with prior knowledge, on the same port.
    let request = http::Request::post(server.url("/echo/h2"))
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let r = common::send(&common::client(true), request).await;
    assert_eq!(r.status, 200);
    assert!(r.body == body, "1 MiB over h2c came back altered");
    assert_eq!(r.header("x-echo-path"), Some("/echo/h2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_is_404_with_a_json_reason() {
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);
    let r = get(&server.url("/no/such/function")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json()["error"],
        "no function is routed at /no/such/function"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_is_500_with_the_request_id_that_the_log_names_then_service_continues() {
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);

    // A caller-supplied id is kept ...
    let request = http::Request::get(server.url("/trap"))
        .header("x-request-id", "req-from-client-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = common::send(&common::client(false), request).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-request-id"), Some("req-from-client-42"));
    assert_eq!(r.json()["request_id"], "req-from-client-42");
    let log = server.wait_for_log("request_id=req-from-client-42");
    let line = log
        .lines()
        .find(|l| l.contains("request failed") && l.contains("req-from-client-42"));
    let line = line.unwrap_or_else(|| panic!("no failure line for the request id in:\n{log}"));
    assert!(line.contains("unreachable"), "the log says why: {line}");
    // ... and the guest's panic message is in the log under the same id.
    assert!(
        log.lines().any(|l| l.contains("guest output")
            && l.contains("req-from-client-42")
            && l.contains("test-trap was asked to fail")),
        "{log}"
    );

    // ... and without one, the host makes one up and logs that.
    let r = get(&server.url("/trap")).await;
    assert_eq!(r.status, 500);
    let id = r
        .header("x-request-id")
        .expect("a generated request id")
        .to_string();
    assert!(
        server
            .wait_for_log(&format!("request_id={id}"))
            .contains(&format!("request_id={id}"))
    );

    assert_eq!(
        get(&server.url("/hello")).await.status,
        200,
        "normal service right after a trap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_is_504_then_service_continues() {
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);
    let r = get(&server.url("/spin")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["function"], "spin");
    assert_eq!(
        get(&server.url("/hello")).await.status,
        200,
        "normal service right after a deadline"
    );
    assert_eq!(
        post(&server.url("/echo"), "still here").await.text(),
        "still here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_after_the_response_head_is_logged_with_the_request_id() {
    let (_dir, path) = manifest(&function("late", guests::TEST_LATE_TRAP, &["/late"], ""));
    let server = Server::start(&path);
    let request = http::Request::get(server.url("/late"))
        .header("x-request-id", "late-trap-7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    // hyper may not have flushed the head when the body fails, so the client sees either
    // a 200 with a cut-off body or a cut connection; never a complete response.
    let complete = match common::client(false).request(request).await {
        Ok(response) => http_body_util::BodyExt::collect(response.into_body())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(
        !complete,
        "a failed body must not look like a complete response"
    );
    let log = server.wait_for_log("function failed after sending its response head");
    let line = log
        .lines()
        .find(|l| l.contains("after sending its response head"));
    assert!(
        line.is_some_and(|l| l.contains("late-trap-7") && l.contains("unreachable")),
        "{log}"
    );
    // Without a length, over HTTP/1.1 and h2 alike: the connection closes before the last
    // chunk, or the stream is reset; the client never reads a clean end.
    for h2c in [false, true] {
        let request = http::Request::get(server.url("/late?chunked"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let complete = match common::client(h2c).request(request).await {
            Ok(response) => http_body_util::BodyExt::collect(response.into_body())
                .await
                .is_ok(),
            Err(_) => false,
        };
        assert!(!complete, "h2c={h2c}: a cut chunked body looked complete");
    }
}

#[test]
fn bad_manifest_exits_non_zero_naming_file_line_and_expectation() {
    let (err, path) = serve_refuses(
        "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nmemroy = \"1MiB\"\n",
    );
    assert!(
        err.contains(&format!("{}:5:1: unknown field `memroy`", path.display())),
        "{err}"
    );
}

#[test]
fn duplicate_route_is_an_error_at_start() {
    let text = [
        function("a", guests::HELLO, &["/x"], ""),
        function("b", guests::ECHO, &["/x"], ""),
    ]
    .concat();
    let (err, _) = serve_refuses(&text);
    assert!(
        err.contains("route /x is already claimed by function `a`"),
        "{err}"
    );
}

#[test]
fn component_without_http_export_is_rejected_at_start_naming_the_function() {
    let (err, _) = serve_refuses(&function(
        "calculator",
        guests::TEST_NOT_HTTP,
        &["/calc"],
        "",
    ));
    assert!(
        err.contains("function `calculator`") && err.contains("wasi:http/incoming-handler"),
        "{err}"
    );
}

#[test]
fn missing_component_names_the_function_and_the_line() {
    let (err, path) = serve_refuses(&function("ghost", "nowhere/ghost.wasm", &["/g"], ""));
    assert!(
        err.contains(&format!("{}:3:", path.display()))
            && err.contains("function `ghost`")
            && err.contains("ghost.wasm"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_cwasm_is_served_and_manifest_precompile_fills_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("raw.cwasm");
    let out = wasmfn(&[
        "compile",
        guests::RAW_WASI_HTTP,
        "-o",
        cwasm.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_mdir, path) = manifest(&function("raw", cwasm.to_str().unwrap(), &["/raw"], ""));
    let server = Server::start(&path);
    let r = get(&server.url("/raw")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "raw wasi:http component saw /raw\n")
    );

    // `compile --manifest` writes one cache entry per .wasm function.
    let cache = tempfile::tempdir().unwrap();
    let (_m2, path) = manifest(
        &[
            function("hello", guests::HELLO, &["/h"], ""),
            function("echo", guests::ECHO, &["/e"], ""),
        ]
        .concat(),
    );
    let out = wasmfn(&[
        "compile",
        "--manifest",
        path.to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let named = |ext: &str| {
        std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == ext)
            })
            .count()
    };
    // Each with an index, so a start finds it without reading and hashing the .wasm.
    assert_eq!((named("cwasm"), named("index")), (2, 2));
    // An image build fills the cache as one user and runs as another: entries must be
    // readable by all.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o444, 0o444, "cache entry mode {mode:o}");
    }
}

#[test]
fn sigterm_exits_zero() {
    let (_dir, path) = manifest(&function("hello", guests::HELLO, &["/hello"], ""));
    let server = Server::start(&path);
    server.sigterm();
    assert_eq!(server.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn wasmfn_functions_selects_a_services_share_of_the_manifest() {
    // What a rendered Knative Service sets: this pod serves hello only.
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start_with(&path, &["--functions", "hello"]);
    assert_eq!(get(&server.url("/hello")).await.status, 200);
    assert_eq!(get(&server.url("/echo")).await.status, 404);
    drop(server);
    let out = wasmfn(&[
        "serve",
        "--manifest",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--functions",
        "hello,helo",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no such function") && stderr.contains("helo"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_waits_for_the_requests_a_wasi_0_3_instance_is_running() {
    // Several requests at once in one instance (and more in others), each 1.5 s long;
    // SIGTERM arrives while all of them run: every one is answered 200, then exit 0.
    let (_dir, path) = manifest(&function("p3", guests::WASI_P3_HTTP, &["/p3/*"], ""));
    let server = Server::start_with(&path, &["--runtimes", "3"]);
    assert_eq!(get(&server.url("/p3/hello")).await.status, 200);
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let url = server.url("/p3/sleep?ms=1500");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    server.until_requests(12).await;
    server.sigterm();
    let mut instances = std::collections::HashSet::new();
    for request in requests {
        let r = request.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        instances.insert(r.header("x-instance").unwrap().to_string());
    }
    assert!(
        instances.len() < 12,
        "instances took several at once: {instances:?}"
    );
    // Its instances finish and end as the host stops; none is reported failed.
    let (status, log) = server.wait_with_log();
    assert_eq!(status, Some(0), "{log}");
    assert!(!log.contains("worker panicked"), "{log}");
    assert!(!log.contains("retired after a failure"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_instance_logs_what_each_request_printed_under_that_requests_id() {
    // Six requests overlap in one instance (each starts 15 ms after the last and waits so
    // that all end together); each prints its tag, emits and calls another function.
    let (_dir, path) = manifest(
        &(function(
            "sdk3",
            guests::HELLO_P3,
            &["/sdk3/*"],
            "allowed_outbound_hosts = [\"http://hello.wasmfn.internal\"]",
        ) + &function("hello", guests::HELLO, &["/hello"], "")),
    );
    // One runtime: the requests meet in one instance rather than one per runtime.
    let server = Server::start_with(&path, &["--runtimes", "1"]);
    let calls = (0..6u64).map(|i| {
        let url = server.url(&format!(
            "/sdk3/work?tag=t{i}&ms={}&url=http://hello.wasmfn.internal/hello",
            120 - 15 * i
        ));
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(15 * i)).await;
            let request = http::Request::get(url)
                .header("x-request-id", format!("req-p3-{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            common::send(&common::client(false), request).await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for i in 0..6 {
        let log = server.wait_for_log(&format!("tag t{i}"));
        let line = log
            .lines()
            .find(|l| l.contains("guest output") && l.contains(&format!("tag t{i}")))
            .unwrap_or_else(|| panic!("no output line for t{i}:\n{log}"));
        assert!(
            line.contains(&format!("request_id=\"req-p3-{i}\"")),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_mid_upload_when_sigterm_arrives_completes_with_200() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);
    let body = vec![b'x'; 256 * 1024];
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..1000]).await.unwrap();
    stream.flush().await.unwrap();
    // Once the server has read the head and started the function, ask it to stop.
    server.until_requests(1).await;
    server.sigterm();
    let log = server.wait_for_log("SIGTERM received");
    assert!(log.contains("SIGTERM received"), "{log}");
    // The rest of the upload arrives after the signal; the request still completes.
    stream.write_all(&body[1000..]).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    let split = text.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        response.len() - split,
        body.len(),
        "the whole body came back"
    );
    assert_eq!(server.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn listens_on_all_interfaces_at_port_from_the_environment() {
    // Knative's contract: the port comes from $PORT. Ask the OS for a free one first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::spawn(&path, &[], &[("PORT", &port.to_string())]);
    assert_eq!(server.addr.to_string(), format!("0.0.0.0:{port}"));
    let r = get(&format!("http://127.0.0.1:{port}/.well-known/wasmfn/ready")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_the_traffic_sent() {
    let (_dir, path) = manifest(
        &[
            examples_and_failures(),
            function(
                "event-echo",
                guests::EVENT_ECHO,
                &[],
                r#"events = [{ type = "metrics.test" }]"#,
            ),
            function(
                "orders",
                guests::ORDER_SERVICE,
                &["/orders"],
                // A WASI 0.3 component: its instance stays for the next request.
                "key_value_stores = [\"saga\"]\nreuse = { idle = \"1h\" }",
            ),
            "[key_value.saga]\ntype = \"memory\"\n".to_string(),
        ]
        .concat(),
    );
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("K_SERVICE", "wasmfn"), ("K_REVISION", "wasmfn-00001")],
    );
    for _ in 0..3 {
        assert_eq!(get(&server.url("/hello")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&server.url("/trap")).await.status, 500);
    }
    // No function answers this one, and it is counted all the same.
    assert_eq!(get(&server.url("/nowhere")).await.status, 404);
    // The first says it happened a minute ago; the second has no time, and no lag.
    let a_minute_ago = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
    for i in 0..2 {
        let mut request = http::Request::post(server.url("/"))
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("m-{i}"))
            .header("ce-source", "/tests")
            .header("ce-type", "metrics.test");
        if i == 0 {
            request = request.header("ce-time", &a_minute_ago);
        }
        let r = common::send(
            &common::client(false),
            request.body(Full::new(Bytes::new())).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }

    // One order: its order.created is emitted (in-process; nobody here subscribes).
    let r = post(
        &server.url("/orders"),
        r#"{"order_id":"m-1","item":"widget","quantity":1,"amount_cents":1}"#,
    )
    .await;
    assert_eq!(r.status, 202);

    let r = get(&server.url("/.well-known/wasmfn/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
            .sum()
    };
    let requests = "wasmfn_requests_total";
    assert_eq!(
        value(requests, &[("function", "hello"), ("status", "200")]),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(requests, &[("function", "trap"), ("status", "500")]),
        2.0,
        "{text}"
    );
    assert_eq!(value(requests, &[("status", "404")]), 1.0, "{text}");
    assert_eq!(
        value(
            "wasmfn_events_total",
            &[
                ("function", "event-echo"),
                ("type", "metrics.test"),
                ("result", "reply")
            ]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value("wasmfn_emitted_events_total", &[("result", "ok")]),
        1.0,
        "{text}"
    );
    // Read off the text: the parser folds a histogram's buckets into one value.
    let lag = |le: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with("wasmfn_event_lag_seconds_bucket{")
                    && l.contains(&format!("le=\"{le}\""))
                    && l.contains("function=\"event-echo\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no lag bucket {le}: {text}"))
    };
    assert_eq!((lag("32.768"), lag("65.536")), (0.0, 1.0), "{text}");
    assert_eq!(
        value(
            "wasmfn_event_lag_seconds_count",
            &[("function", "event-echo")]
        ),
        1.0,
        "{text}"
    );
    // Every request and event instantiated once: 3 hello + 2 trap + 2 events + 1 order.
    assert_eq!(
        value("wasmfn_instantiate_duration_seconds_count", &[]),
        8.0,
        "{text}"
    );
    // The order service's WASI 0.3 instance waits, idle, for its next request.
    assert_eq!(value("wasmfn_instances_in_flight", &[]), 1.0, "{text}");
    assert!(value("wasmfn_start_to_ready_seconds", &[]) > 0.0, "{text}");
    assert!(
        value("wasmfn_start_to_first_response_seconds", &[]) > 0.0,
        "{text}"
    );
    // Six components, each found in the cache or compiled into it.
    let loads = value("wasmfn_component_cache_total", &[("result", "hit")])
        + value("wasmfn_component_cache_total", &[("result", "miss")]);
    assert_eq!(loads, 6.0, "{text}");
    // Knative's identity labels every series.
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.labels.get("service") == Some("wasmfn")
                && s.labels.get("revision") == Some("wasmfn-00001")),
        "{text}"
    );

    // The Grafana dashboard in deploy/ queries only series this host exports.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(guests::GUESTS_DIR)
                .join("../deploy/grafana/wasmfn-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("wasmfn_"))
            {
                assert!(
                    text.lines().any(|l| l.starts_with(name)),
                    "panel {:?} queries {name}, which the host does not export:\n{text}",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "the dashboard has queries");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_lines_with_request_and_trace_ids_when_not_at_a_terminal() {
    let (_dir, path) = manifest(&examples_and_failures());
    // What Knative gets: stdout is not a terminal, so the default is JSON.
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("WASMFN_LOG_FORMAT", "auto")],
    );
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = common::send(
        &common::client(false),
        http::Request::get(server.url("/hello"))
            .header("traceparent", traceparent)
            .header("x-request-id", "json-log-1")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let log = server.wait_for_log("json-log-1");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["request_id"] == "json-log-1")
        .unwrap_or_else(|| panic!("no request line: {log}"));
    assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request["function"], "hello");
    assert_eq!(request["status"], 200);
    assert!(request["elapsed_us"].as_u64().is_some());
    assert_eq!(request["level"], "INFO");
}

/// Runs `wasmfn` in `dir` with the test's compile cache; returns (success, stdout, stderr).
fn wasmfn_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(args)
        .current_dir(dir)
        .env("WASMFN_CACHE_DIR", common::cache_dir())
        .env_remove("WASMFN_MANIFEST")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn new_adds_a_function_and_never_overwrites_or_breaks_the_manifest() {
    let (dir, path) = manifest(&function("hello", guests::HELLO, &["/hello"], ""));
    let before = std::fs::read_to_string(&path).unwrap();

    // The name is taken: nothing is written.
    let (ok, _, err) = wasmfn_in(dir.path(), &["new", "http-rust", "hello"]);
    assert!(!ok);
    assert!(
        err.contains("nothing was written") && err.contains("hello"),
        "{err}"
    );
    assert!(!dir.path().join("hello").exists());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    let (ok, _, err) = wasmfn_in(dir.path(), &["new", "http-rust", "Bad_Name"]);
    assert!(!ok);
    assert!(err.contains("lowercase letters"), "{err}");

    let (ok, out, err) = wasmfn_in(dir.path(), &["new", "event-rust", "orders"]);
    assert!(ok, "{err}");
    assert!(out.contains("Next: wasmfn dev"), "{out}");
    assert!(dir.path().join("orders/src/lib.rs").is_file());
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.starts_with(&before),
        "the existing entries are kept:\n{after}"
    );
    assert!(
        after.contains("name = \"orders\"") && after.contains("com.example.orders"),
        "{after}"
    );

    // The project exists now: a second `new` refuses.
    let (ok, _, err) = wasmfn_in(dir.path(), &["new", "http-python", "orders"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
}

#[test]
fn check_reports_every_problem_and_warns_about_capabilities_not_granted() {
    let text = [
        function("hello", guests::HELLO, &["/hello"], ""),
        function(
            "sdk3",
            guests::HELLO_P3,
            &["/sdk3/*"],
            "events = [{ type = \"p3.ping\" }]",
        ),
        function("caller", guests::OUTBOUND_CALL, &["/call"], ""),
        function("not-http", guests::TEST_NOT_HTTP, &["/nope"], ""),
        function(
            "unbuilt",
            "unbuilt/out.wasm",
            &["/unbuilt"],
            "build = { command = \"true\", workdir = \"unbuilt\" }",
        ),
    ]
    .concat();
    let (dir, _path) = manifest(&text);
    let (ok, out, err) = wasmfn_in(dir.path(), &["check"]);
    assert!(!ok, "{out}{err}");
    // Each function's WASI version and the exports it is served through.
    assert!(
        out.contains("ok  hello  /hello  (WASI 0.2: wasi:http/incoming-handler@0.2, wasmfn:function/http-handler@0.1.0)"),
        "{out}"
    );
    assert!(
        out.contains("(WASI 0.3, instances serve many at once: wasi:http/handler@0.3, wasmfn:function/event-handler@0.2.0)"),
        "{out}"
    );
    assert!(
        err.contains("`caller`") && err.contains("allowed_outbound_hosts"),
        "{err}"
    );
    assert!(
        err.contains("`not-http`") && err.contains("incoming-handler"),
        "{err}"
    );
    assert!(
        err.contains("`unbuilt`") && err.contains("wasmfn build unbuilt"),
        "{err}"
    );
    assert!(err.contains("2 problems"), "{err}");

    let (dir, _path) = manifest(&function("hello", guests::HELLO, &["/hello"], ""));
    let (ok, out, err) = wasmfn_in(dir.path(), &["check"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 function ready to serve"), "{out}");
}

#[test]
fn invoke_and_send_answer_in_process_and_fail_on_error_statuses() {
    let text = [
        function("hello", guests::HELLO, &["/hello"], ""),
        function("sdk3", guests::HELLO_P3, &["/sdk3/*"], ""),
        "[[functions]]\nname = \"event-echo\"\ncomponent = \"".to_string()
            + guests::EVENT_ECHO
            + "\"\nevents = [{ type = \"com.example.ping\" }]\n",
    ]
    .concat();
    let (dir, _path) = manifest(&text);

    let (ok, out, err) = wasmfn_in(dir.path(), &["invoke", "/hello?name=Ada"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Hello, Ada!\n");
    // A WASI 0.3 function's instance ends with the command, and says nothing of it.
    let (ok, out, err) = wasmfn_in(dir.path(), &["invoke", "/sdk3/hello?name=Ada"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Hello, Ada!\n");
    assert!(!err.contains("retired after a failure"), "{err}");

    let (ok, out, _) = wasmfn_in(
        dir.path(),
        &["invoke", "-i", "-X", "POST", "-d", "x", "/missing"],
    );
    assert!(!ok);
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(out.contains("x-request-id: "), "{out}");

    for mode in ["binary", "structured"] {
        let (ok, out, err) = wasmfn_in(
            dir.path(),
            &[
                "send",
                "--type",
                "com.example.ping",
                "--mode",
                mode,
                "--ext",
                "tenant=acme",
                "--data",
                r#"{"n":2}"#,
            ],
        );
        assert!(ok, "{mode}: {err}");
        let reply: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(reply["type"], "com.example.ping.echo", "{reply}");
        assert_eq!(reply["data"], serde_json::json!({"n": 2}), "{reply}");
    }

    // Delivered to a function that is not there: the host's 404, and a failing exit.
    let (ok, _, err) = wasmfn_in(
        dir.path(),
        &["send", "--type", "com.example.ping", "--to", "nobody"],
    );
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = wasmfn_in(
        dir.path(),
        &["send", "--type", "com.example.ping", "--ext", "Bad=1"],
    );
    assert!(!ok);
    assert!(err.contains("--ext"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_variable_stops_serve_and_a_resolved_one_is_never_logged() {
    let text = function(
        "hello",
        guests::HELLO,
        &["/hello"],
        "variables = { greeting = { env = \"WASMFN_TEST_GREETING\" } }",
    );
    // Unset: the start fails, naming the function and the variable.
    let (err, _) = serve_refuses(&text);
    assert!(err.contains("function `hello`"), "{err}");
    assert!(
        err.contains("variable `greeting`") && err.contains("WASMFN_TEST_GREETING is not set"),
        "{err}"
    );
    // Set: the function uses it, and no log line carries it.
    let (_dir, path) = manifest(&text);
    let secret = "Sesame-7f3a9c";
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[("WASMFN_TEST_GREETING", secret), ("RUST_LOG", "debug")],
    );
    let r = common::get(&server.url("/hello?name=Ada")).await;
    assert_eq!(r.text(), format!("{secret}, Ada!\n"));
    let log = server.log();
    assert!(log.contains("function loaded"), "{log}");
    assert!(
        !log.contains(secret),
        "a resolved value reached the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spin_app_is_served_and_checked_from_its_spin_toml() {
    let spin_toml = std::path::Path::new(guests::GUESTS_DIR).join("examples/spin-hello/spin.toml");
    // `check` reads it as `serve` would (in a copy: it opens the embedded store beside the
    // manifest). The Knative render it also checks refuses the store kept in the pod, as
    // for any manifest, until Spin's runtime configuration can put it on Redis.
    let copy = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&spin_toml).unwrap().replace(
        "../../target/wasm32-wasip2/release/spin_hello.wasm",
        guests::SPIN_HELLO,
    );
    std::fs::write(copy.path().join("spin.toml"), text).unwrap();
    for dir in ["static", "notes"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(spin_toml.parent().unwrap().join(dir))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let (_, out, err) = wasmfn_in(copy.path(), &["check", "--manifest", "spin.toml"]);
    assert!(
        out.contains("ok  spin-hello  /hello/* /files/*"),
        "{out}{err}"
    );
    assert!(
        err.contains("1 problem") && err.contains("store `default`"),
        "{err}"
    );

    // Application variables come from SPIN_VARIABLE_<NAME>, as under `spin up`; the store
    // is kept across a restart.
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    let env = [("SPIN_VARIABLE_GREETING", "Howdy")];
    let server = Server::spawn(&spin_toml, &args, &env);
    let r = get(&server.url("/hello")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Howdy from a Spin app\n")
    );
    let r = get(&server.url("/hello/env")).await;
    assert_eq!(r.text(), "GREETING=hi from spin.toml PATH seen: false\n");
    assert_eq!(get(&server.url("/hello/count")).await.text(), "visit 1\n");
    assert!(
        !server.log().contains("Howdy"),
        "a variable's value is never logged"
    );
    server.sigterm();
    assert_eq!(server.wait(), Some(0));
    let server = Server::spawn(&spin_toml, &args, &[]);
    assert_eq!(get(&server.url("/hello/count")).await.text(), "visit 2\n");
    assert_eq!(
        get(&server.url("/hello")).await.text(),
        "Hello from a Spin app\n"
    );

    // A mistake in it is reported on its line of spin.toml.
    let (_dir, bad) = manifest(
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\nsqlite_databases = [\"orders\"]\n",
    );
    let out = wasmfn(&["serve", "--manifest", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:9:", bad.display()))
            && stderr.contains("[sqlite_database.orders]"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spin_apps_runtime_config_puts_its_store_on_redis() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let spin_toml = std::path::Path::new(guests::GUESTS_DIR).join("examples/spin-hello/spin.toml");
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(
        &rc,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    // Each host keeps embedded stores in a data directory of its own: only Redis is shared.
    let serve = |data: &std::path::Path| {
        Server::spawn(
            &spin_toml,
            &[
                "--listen",
                "127.0.0.1:0",
                "--runtime-config-file",
                rc.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &[],
        )
    };
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(first.path());
    assert_eq!(get(&a.url("/hello/count")).await.text(), "visit 1\n");
    let b = serve(second.path());
    assert_eq!(
        get(&b.url("/hello/count")).await.text(),
        "visit 2\n",
        "one store, in Redis"
    );
    assert_eq!(get(&a.url("/hello/count")).await.text(), "visit 3\n");
    assert!(
        std::fs::read_dir(first.path()).unwrap().next().is_none(),
        "no embedded store was made"
    );
    // A SIGHUP reload reads the runtime configuration again: the store stays Redis.
    let status = Command::new("kill")
        .args(["-HUP", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let log = a.wait_for_log("reloaded: new requests");
    assert!(log.contains("reloaded: new requests"), "{log}");
    assert_eq!(get(&a.url("/hello/count")).await.text(), "visit 4\n");

    // And `deploy render` takes it: the Service needs no data volume and scales to zero.
    let out = wasmfn(&[
        "deploy",
        "render",
        "--manifest",
        spin_toml.to_str().unwrap(),
        "--runtime-config-file",
        rc.to_str().unwrap(),
        "--image",
        "registry.example/shop:1",
    ]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        yaml.contains("autoscaling.knative.dev/min-scale: '0'"),
        "{yaml}"
    );
    // No volume for an embedded store (the store is Redis); only /tmp, for its `files`.
    assert!(!yaml.contains("wasmfn-data"), "{yaml}");
    assert!(yaml.contains("mountPath: /tmp"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_1_request_without_one_host_is_answered_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, path) = manifest(&examples_and_failures());
    let server = Server::start(&path);
    let send = |head: &'static str| {
        let addr = server.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8_lossy(&response).into_owned()
        }
    };
    // RFC 9112 §3.2: no Host, or two, is a 400 saying why.
    for head in [
        "GET /hello HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET /hello HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n",
    ] {
        let text = send(head).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{head:?}: {text}");
        assert!(text.contains("exactly one Host header"), "{text}");
    }
    // One Host, or HTTP/1.0 without one, is served.
    let text = send("GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let text = send("GET /hello HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
}

#[test]
fn check_says_plainly_what_is_wrong_with_an_empty_manifest_a_huge_number_and_a_file_that_is_not_wasm()
 {
    let check = |text: &str, files: &[(&str, &[u8])]| {
        let (dir, path) = manifest(text);
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let out = wasmfn(&["check", "--manifest", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stderr)
    };
    // A manifest with no function serves nothing: check fails and says what to add.
    let (ok, err) = check("", &[]);
    assert!(!ok, "{err}");
    assert!(err.contains("declares no function"), "{err}");
    // A number past i64 names the limit, not Rust's types.
    let entry = "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n";
    let (ok, err) = check(&format!("{entry}concurrency = 99999999999999999999\n"), &[]);
    assert!(!ok);
    assert!(
        err.contains(":5:15: the number 99999999999999999999 is too large")
            && !err.contains("i128"),
        "{err}"
    );
    // A file that is not WebAssembly (an HTML error page saved as .wasm) is one line saying
    // so, with its first bytes.
    let (ok, err) = check(entry, &[("a.wasm", b"<html>404</html>")]);
    assert!(!ok);
    assert!(
        err.contains("it is not WebAssembly") && err.contains("\"<html>40\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "one line and the summary: {err}");
}
