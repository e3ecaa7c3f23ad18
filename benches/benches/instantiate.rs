//! In-process cost of one request: route + fresh instance from the pre-instance + the
//! guest's handler + collecting the response, for the `hello` example. Measured with the
//! pooling allocator and on demand, beside a native Rust handler doing the same work through
//! the same request/response types (the baseline the ratios in README.md are taken against).
//! The `events` group does the same for one CloudEvent delivered to `event-echo`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use wasmfn::engine::{EngineOptions, PoolingMode};
use wasmfn::manifest::routes::{RoutePattern, RouteTable};
use wasmfn::server::App;
use wasmfn::testing;

fn hello_app(pooling: PoolingMode) -> std::sync::Arc<App> {
    let text = format!(
        "[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/hello\"]\nvariables = {{ greeting = \"Hello\" }}\n",
        wasmfn_guest_artifacts::HELLO
    );
    app_for(&text, pooling)
}

/// `hello` as two versions (50/50, both greeting "Hello"): what choosing a version adds.
fn hello_versions_text(sticky: &str) -> String {
    format!(
        "[[functions]]\nname = \"hello\"\nroutes = [\"/hello\"]\nvariables = {{ greeting = \"Hello\" }}\n{sticky}\n\
         versions = [{{ name = \"blue\", component = {c:?}, weight = 50 }}, {{ name = \"green\", component = {c:?}, weight = 50, tag = \"canary\" }}]\n",
        c = wasmfn_guest_artifacts::HELLO
    )
}

fn app_for(text: &str, pooling: PoolingMode) -> std::sync::Arc<App> {
    let engine = testing::engine(EngineOptions {
        pooling,
        ..EngineOptions::default()
    });
    testing::app(text, &engine)
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("/hello?name=bench")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn wasm(app: &App) -> Bytes {
    let response = app.handle(request()).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// What `hello` does, natively: read the query, format the greeting, build a response.
async fn native() -> Bytes {
    let req = request();
    let name = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
        .unwrap_or("world")
        .to_string();
    let response = http::Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("Hello, {name}!\n"))))
        .unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

fn bench_hello(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pooled = hello_app(PoolingMode::On);
    let on_demand = hello_app(PoolingMode::Off);
    assert_eq!(runtime.block_on(wasm(&pooled)), runtime.block_on(native()));

    let mut group = c.benchmark_group("hello");
    group.bench_function("native-baseline", |b| {
        b.iter(|| black_box(runtime.block_on(native())))
    });
    group.bench_function("wasm-pooling", |b| {
        b.iter(|| black_box(runtime.block_on(wasm(&pooled))))
    });
    group.bench_function("wasm-on-demand", |b| {
        b.iter(|| black_box(runtime.block_on(wasm(&on_demand))))
    });
    let versioned = app_for(&hello_versions_text(""), PoolingMode::On);
    assert_eq!(
        runtime.block_on(wasm(&versioned)),
        runtime.block_on(native())
    );
    group.bench_function("wasm-pooling-two-versions", |b| {
        b.iter(|| black_box(runtime.block_on(wasm(&versioned))))
    });
    group.finish();
}

/// Choosing a version alone: by the weights (a random draw), by a sticky header (a hash),
/// by the version header (a map lookup).
fn bench_versions(c: &mut Criterion) {
    let split = |sticky: &str| {
        let m = wasmfn::manifest::Manifest::parse(
            std::path::Path::new("/bench/wasmfn.toml"),
            &hello_versions_text(sticky),
        )
        .unwrap();
        wasmfn::traffic::Split::new(m.functions[0].versions.as_ref().unwrap())
    };
    let weighted = split("");
    let sticky = split("sticky = { header = \"x-user-id\" }");
    let mut plain = http::HeaderMap::new();
    plain.insert("host", "localhost".parse().unwrap());
    let mut user = plain.clone();
    user.insert("x-user-id", "user-1234567".parse().unwrap());
    let mut tagged = plain.clone();
    tagged.insert("x-wasmfn-version", "canary".parse().unwrap());
    let mut group = c.benchmark_group("versions");
    group.bench_function("choose-by-weight", |b| {
        b.iter(|| black_box(weighted.choose(black_box(&plain))))
    });
    group.bench_function("choose-sticky-header", |b| {
        b.iter(|| black_box(sticky.choose(black_box(&user))))
    });
    group.bench_function("choose-by-version-header", |b| {
        b.iter(|| black_box(weighted.choose(black_box(&tagged))))
    });
    group.finish();
}

fn event_app() -> std::sync::Arc<App> {
    let text = format!(
        "[[functions]]\nname = \"event-echo\"\ncomponent = {:?}\nevents = [{{ type = \"order.created\" }}]\n",
        wasmfn_guest_artifacts::EVENT_ECHO
    );
    testing::app(&text, &testing::engine(EngineOptions::default()))
}

const EVENT_BODY: &[u8] = br#"{"order_id":"o-1","item":"widget","quantity":1,"amount_cents":500}"#;

fn event_request() -> http::Request<Full<Bytes>> {
    http::Request::post("/")
        .header("host", "localhost")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b-1")
        .header("ce-source", "/bench")
        .header("ce-type", "order.created")
        .header("ce-subject", "o-1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(EVENT_BODY)))
        .unwrap()
}

/// One binary-mode event through `App::handle` to `event-echo` and its binary reply, beside
/// the codec alone; compare with `hello/wasm-pooling` from the same run for the cost of the
/// event path over a plain HTTP request.
fn bench_events(c: &mut Criterion) {
    use wasmfn::cloudevent::{self, Mode};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = event_app();
    let send = || async {
        let response = app.handle(event_request()).await;
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap().to_bytes()
    };
    assert_eq!(runtime.block_on(send()).as_ref(), EVENT_BODY);

    let headers = event_request().headers().clone();
    let event = cloudevent::decode(Mode::Binary, &headers, EVENT_BODY).unwrap();
    let mut group = c.benchmark_group("events");
    group.bench_function("codec-decode-binary", |b| {
        b.iter(|| {
            black_box(cloudevent::decode(
                Mode::Binary,
                black_box(&headers),
                EVENT_BODY,
            ))
        })
    });
    group.bench_function("codec-encode-binary", |b| {
        b.iter(|| black_box(cloudevent::encode(Mode::Binary, black_box(&event))))
    });
    group.bench_function("event-echo-binary-pooling", |b| {
        b.iter(|| black_box(runtime.block_on(send())))
    });
    group.finish();
}

/// What observability adds to one request: the metrics recorded for it (request counter
/// and duration, instantiation histogram, live-instance gauge, first-response check), and
/// one JSON request log line formatted and handed to the batching writer.
fn bench_observability(c: &mut Criterion) {
    use std::time::Duration;
    use wasmfn::metrics::{Instantiations, Metrics, intern};
    let metrics = Metrics::new();
    let label = intern("hello");
    // What a function keeps (its series, its instantiation histogram), as the host does.
    let series = metrics.series(label, "");
    let instantiations = Instantiations::default();
    let mut group = c.benchmark_group("observability");
    group.bench_function("metrics-per-request", |b| {
        b.iter(|| {
            let _live = metrics.instance();
            metrics.instantiated(&instantiations, black_box(label), Duration::from_micros(12));
            metrics.answered(black_box(&series), 200, Duration::from_micros(80));
            metrics.responded();
        })
    });
    let trace = wasmfn::telemetry::TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    group.bench_function("spans-when-not-exporting", |b| {
        use tracing::Instrument;
        b.iter(|| {
            let root = wasmfn::telemetry::root_span(
                "request",
                "hello",
                "0af7651916cd43dd8448eb211c80319c",
                Some(&trace),
            );
            let (a, b) = (
                wasmfn::telemetry::child_span("instantiate"),
                wasmfn::telemetry::child_span("handle"),
            );
            futures_executor_free(async {}.instrument(a));
            futures_executor_free(async {}.instrument(b));
            black_box(root)
        })
    });
    let writer = wasmfn::logging::Batched::new(Box::new(std::io::sink()));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("json-request-log-line", |b| {
            b.iter(|| {
                tracing::info!(
                    function = "hello",
                    request_id = "0af7651916cd43dd8448eb211c80319c",
                    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                    method = "GET",
                    path = "/hello",
                    status = 200u16,
                    elapsed_us = 80u64,
                    "request"
                );
            })
        });
    });
    writer.stop();
    group.finish();
}

/// Drops an instrumented future unpolled: what remains is the cost of wrapping it.
fn futures_executor_free<F: std::future::Future>(f: F) {
    black_box(f);
}

fn bench_router(c: &mut Criterion) {
    let routes = (0..200)
        .map(|i| {
            (
                RoutePattern::parse(&format!("/api/v1/svc{i}/*")).unwrap(),
                i,
            )
        })
        .chain([
            (RoutePattern::parse("/hello").unwrap(), 200),
            (RoutePattern::parse("/*").unwrap(), 201),
        ]);
    let table = RouteTable::build(routes).unwrap();
    c.bench_function("router/lookup-prefix-depth-5-of-202", |b| {
        b.iter(|| black_box(table.lookup(black_box("/api/v1/svc150/orders/42"))))
    });
}

/// What admission adds to every request: a slot of the host's in-flight limit, of the
/// function's concurrency and of the instance pool, taken and returned (none of them full).
fn bench_admission(c: &mut Criterion) {
    use wasmfn::admission::Gate;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gates = [
        Gate::new(1000, "in flight"),
        Gate::new(100, "concurrency"),
        Gate::new(1000, "pool"),
    ];
    let wait = std::time::Duration::from_secs(1);
    c.bench_function("admission/three-gates-enter-and-leave", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let a = gates[0].enter(wait).await.unwrap();
                let b = gates[1].enter(wait).await.unwrap();
                let c = gates[2].enter(wait).await.unwrap();
                black_box((a, b, c))
            })
        })
    });
}

criterion_group!(
    benches,
    bench_hello,
    bench_versions,
    bench_events,
    bench_observability,
    bench_router,
    bench_admission
);
criterion_main!(benches);
