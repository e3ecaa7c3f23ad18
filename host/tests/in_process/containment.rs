//! Guests that fail or probe their sandbox: a trap, a spin past the deadline, memory past
//! the limit, a trap after the response head, a 0.2 handler that answers with an error code
//! or nothing, an invalid reply event, and every way out of the sandbox refused.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn_guest_artifacts as guests;

use super::{app, call, common, entry, refused};

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_trap() {
    let app = app(&(entry("trap", guests::TEST_TRAP, &["/trap"], "")
        + &entry("hello", guests::HELLO, &["/hello"], "")));
    for _ in 0..3 {
        let r = call(&app, "GET", "/trap", "").await;
        assert_eq!(r.status, 500);
        let id = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(r.json()["request_id"], id.as_str());
        assert_eq!(r.json()["function"], "trap");
        assert_eq!(
            call(&app, "GET", "/hello", "").await.status,
            200,
            "served normally after a trap"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_spin() {
    let app = app(
        &(entry("spin", guests::TEST_SPIN, &["/spin"], "timeout = \"200ms\"")
            + &entry("hello", guests::HELLO, &["/hello"], "")),
    );
    // The guest never yields to the host, so only the epoch deadline can stop it.
    let (spun, hello) = tokio::join!(call(&app, "GET", "/spin", ""), async {
        super::common::until_instances(&app, 1).await;
        call(&app, "GET", "/hello", "").await
    });
    spun.assert_error(504, "200ms");
    assert_eq!(
        hello.status, 200,
        "other functions keep serving while one spins"
    );
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_oom() {
    let app = app(
        &(entry("oom", guests::TEST_OOM, &["/oom"], "memory = \"8MiB\"")
            + &entry("hello", guests::HELLO, &["/hello"], "")),
    );
    let r = call(&app, "GET", "/oom", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_late_trap() {
    let app = app(&(entry("late", guests::TEST_LATE_TRAP, &["/late"], "")
        + &entry("hello", guests::HELLO, &["/hello"], "")));
    let request = http::Request::get("/late")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.handle(request).await;
    // The head went out before the trap, so the status is the guest's ...
    assert_eq!(response.status(), 200);
    // ... and the body is cut off: an error, or fewer than the 1000 bytes it announced
    // (over a socket hyper then closes the connection, see cli.rs).
    if let Ok(body) = response.into_body().collect().await {
        assert!(
            body.to_bytes().len() < 1000,
            "a cut-off body must not look complete"
        );
    }
    // Without a length, only an error at the body's end can say it was cut.
    let request = http::Request::get("/late?chunked")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    match response.into_body().collect().await {
        Ok(body) => panic!("a cut-off body ended cleanly, after {:?}", body.to_bytes()),
        Err(e) => assert!(
            e.to_string().contains("before its response was complete"),
            "{e}"
        ),
    }
    assert_eq!(call(&app, "GET", "/hello", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_error_codes() {
    // The status for each `wasi:http` error code a 0.2 handler sets its outparam to: the
    // README's table, on the 0.2 path (wasi_p3.rs has the 0.3 one).
    let app = app(&entry("codes", guests::TEST_ERROR_CODES, &["/code/*"], ""));
    for (code, status) in [
        ("body-size", 413),
        ("header-size", 431),
        ("header-section-size", 431),
        ("uri-too-long", 414),
        ("length-required", 411),
        ("method-invalid", 400),
        ("connection-timeout", 504),
        ("loop-detected", 508),
        ("denied", 502),
        ("destination-not-found", 502),
        ("internal", 500),
    ] {
        let r = call(&app, "GET", format!("/code/{code}"), "").await;
        assert_eq!(r.status, status, "{code}: {}", r.text());
        assert_eq!(r.json()["function"], "codes", "{code}");
        assert_eq!(
            r.json()["request_id"],
            r.headers["x-request-id"].to_str().unwrap()
        );
    }
    // Returning without setting the outparam: no valid response.
    let r = call(&app, "GET", "/code/none", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["function"], "codes");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_bad_reply() {
    // A reply that breaks the spec is the guest's fault: 500, naming what is wrong, and it
    // goes nowhere. `display` takes every event, so with two subscribers the reply would
    // be emitted to it, were it valid.
    let app = app(&(entry(
        "bad",
        guests::TEST_BAD_REPLY,
        &[],
        "events = [{ type = \"ping\" }]",
    ) + &entry("display", guests::EVENT_DISPLAY, &[], "events = [{}]")));
    let r = super::send_event(&app, "ping", serde_json::json!({})).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["function"], "bad");
    assert!(
        r.text().contains("invalid event") && r.text().contains("RFC 3339"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    let metrics = app.metrics().encode();
    assert!(
        metrics.contains("function=\"display\"") && metrics.contains("type=\"ping\""),
        "display saw the ping: {metrics}"
    );
    assert!(
        !metrics.contains("ping.bad"),
        "the invalid reply went nowhere: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_probe() {
    // Everything the guest tries is real and reachable from the host: a file the host
    // can read, a listening TCP socket, an HTTP port. The host process also has an
    // environment (PATH at least). The guest must reach none of it.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"host-only").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    web.set_nonblocking(true).unwrap();
    assert!(
        std::env::vars().next().is_some(),
        "the host has an environment"
    );

    let app = app(&entry("probe", guests::TEST_PROBE, &["/probe/*"], ""));
    let uri = format!(
        "/probe/sandbox?file={}&connect={}&url=http://{}/x",
        secret.display(),
        tcp.local_addr().unwrap(),
        web.local_addr().unwrap()
    );
    let r = call(&app, "GET", &uri, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    for attempt in [
        "env",
        "args",
        "read_file",
        "list_root",
        "list_cwd",
        "write_tmp",
        "tcp_connect",
        "udp_bind",
        "dns",
        "http",
    ] {
        assert_eq!(
            report[attempt]["allowed"], false,
            "{attempt} must be denied: {report:#}"
        );
    }
    assert!(
        report["http"]["detail"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "outbound HTTP is refused by policy, not by chance: {report:#}"
    );
    for (what, listener) in [("TCP", &tcp), ("HTTP", &web)] {
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "the guest reached the host's {what} listener"
        );
    }
    assert!(!r.text().contains("host-only"));

    // Its environment is what its entry declares, and nothing of the host's.
    let declared = super::app(&entry(
        "probe",
        guests::TEST_PROBE,
        &["/probe/*"],
        "environment = { GREETING = \"hi there\", EMPTY = \"\" }",
    ));
    let r = call(&declared, "GET", &uri, "").await;
    assert_eq!(
        r.json()["env"]["detail"],
        r#"[("EMPTY", ""), ("GREETING", "hi there")]"#
    );

    // An idle guest waits on the host's clock without holding anything up.
    let r = call(&app, "GET", "/probe/sleep?ms=20", "").await;
    assert_eq!(r.text(), "slept 20 ms\n");
    let r = call(&app, "GET", "/probe/print?bytes=10", "").await;
    assert_eq!(r.text(), "printed 10 bytes\n");
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_not_http() {
    let msg = refused(
        &entry("calc", guests::TEST_NOT_HTTP, &["/calc"], ""),
        Some(&common::cache_dir()),
    );
    assert!(msg.starts_with("/virtual/wasmfn.toml:3:"), "{msg}");
    assert!(msg.contains("function `calc`"), "{msg}");
    assert!(
        msg.contains("does not export wasi:http/incoming-handler"),
        "{msg}"
    );
}
