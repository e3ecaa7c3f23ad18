//! A fixed number of requests through `App::handle`, for counting instructions per request
//! with callgrind (wall-clock on these machines moves by ±20% between runs; instructions do
//! not). Run it twice and divide the difference by the difference in requests:
//!
//! ```sh
//! cargo build --release -p wasmfn-benches --bin instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/instructions hello 300
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/instructions hello 1300
//! ```
//!
//! Kinds: `hello` (an SDK function through the one-call `http-handler` export), `hello-wasi-http`
//! (the same through `wasi:http`, as a body of unknown length goes), `hello-reuse` (`hello`
//! with instance reuse: one instance serves them all), `event-echo` (a binary-mode
//! CloudEvent in, its reply out), `p3-hello` (the plain WASI 0.3 guest, whose instance
//! serves many requests), `sdk3-hello` (the SDK's `async fn` hello, WASI 0.3: hello-p3) and
//! `event-echo-p3` (event-echo as an `async fn`, WASI 0.3). The instance allocator is on-demand: valgrind
//! cannot reserve the pooling allocator's address space. One current-thread runtime.
//! `INSTRUCTIONS_LOG=json` (or `text`) writes the log lines `serve` writes, the access line
//! of each request among them, to stdout (send it to /dev/null): their cost is counted too.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn::engine::{EngineOptions, PoolingMode};
use wasmfn::server::App;
use wasmfn::testing;
use wasmfn_benches::UnknownLength;
use wasmfn_guest_artifacts as guests;

fn main() {
    // SAFETY: nothing else runs yet; a captured backtrace per error value would be counted.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "hello".into());
    let _log = std::env::var("INSTRUCTIONS_LOG").ok().map(|format| {
        let format = match format.as_str() {
            "json" => wasmfn::logging::LogFormat::Json,
            "text" => wasmfn::logging::LogFormat::Text,
            other => panic!("INSTRUCTIONS_LOG={other}: json or text"),
        };
        wasmfn::logging::init(format, wasmfn::logging::Audience::Server)
    });
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(300);
    let (component, extra) = match kind.as_str() {
        "hello" | "hello-wasi-http" => (guests::HELLO, "variables = { greeting = \"Hello\" }\n"),
        "hello-reuse" => (
            guests::HELLO,
            "variables = { greeting = \"Hello\" }\nreuse = { max_requests = 1000000, idle = \"1h\" }\n",
        ),
        "p3-hello" => (guests::WASI_P3_HTTP, ""),
        "sdk3-hello" => (guests::HELLO_P3, "variables = { greeting = \"Hello\" }\n"),
        "event-echo" => (guests::EVENT_ECHO, ""),
        "event-echo-reuse" => (
            guests::EVENT_ECHO,
            "reuse = { max_requests = 1000000, idle = \"1h\" }\n",
        ),
        "event-echo-p3" => (guests::EVENT_ECHO_P3, ""),
        other => panic!(
            "unknown kind {other}: hello, hello-wasi-http, hello-reuse, p3-hello, sdk3-hello, event-echo, event-echo-reuse or event-echo-p3"
        ),
    };
    let text = if kind.starts_with("event-echo") {
        format!(
            "[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\nevents = [{{ type = \"bench.ping\" }}]\n{extra}"
        )
    } else {
        format!(
            "[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\nroutes = [\"/hello\"]\n{extra}"
        )
    };
    let engine = testing::engine(EngineOptions {
        pooling: PoolingMode::Off,
        ..EngineOptions::default()
    });
    let app: Arc<App> = testing::app(&text, &engine);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..n {
            let status = match kind.as_str() {
                "hello" | "hello-reuse" | "p3-hello" | "sdk3-hello" => {
                    // The WASI 0.3 guest answers `/hello` by its last segment.
                    let request = http::Request::get("/hello?name=bench")
                        .header("host", "localhost")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let response = app.handle(request).await;
                    let status = response.status();
                    response.into_body().collect().await.unwrap();
                    status
                }
                "hello-wasi-http" => {
                    let request = http::Request::get("/hello?name=bench")
                        .header("host", "localhost")
                        .body(UnknownLength)
                        .unwrap();
                    let response = app.handle(request).await;
                    let status = response.status();
                    response.into_body().collect().await.unwrap();
                    status
                }
                _ => {
                    let request = http::Request::post("/")
                        .header("host", "localhost")
                        .header("ce-specversion", "1.0")
                        .header("ce-id", "1")
                        .header("ce-source", "/bench")
                        .header("ce-type", "bench.ping")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
                        .unwrap();
                    let response = app.handle(request).await;
                    let status = response.status();
                    response.into_body().collect().await.unwrap();
                    status
                }
            };
            assert!(status.is_success(), "{kind}: {status}");
        }
    });
}
