//! Traces leave the spawned binary over OTLP/HTTP to a receiver in the test, decoded with
//! the OpenTelemetry protobuf definitions: each request and event is a span continuing the
//! caller's `traceparent`, with `instantiate` and `handle` children.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Server, function, manifest};

/// An OTLP/HTTP trace receiver: keeps every span POSTed to `/v1/traces`.
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for rs in export.resource_spans {
                                for ss in rs.scope_spans {
                                    store.lock().unwrap().extend(ss.spans);
                                }
                            }
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_events_are_spans_in_the_callers_trace() {
    let (addr, spans) = receiver().await;
    let (_dir, path) = manifest(
        &[
            function("hello", guests::HELLO, &["/hello"], ""),
            function("event-echo", guests::EVENT_ECHO, &[], "events = [{}]"),
        ]
        .concat(),
    );
    let endpoint = format!("http://{addr}");
    let server = Server::spawn(
        &path,
        &["--listen", "127.0.0.1:0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let client = common::client(false);
    let http_trace = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let r = common::send(
        &client,
        http::Request::get(server.url("/hello"))
            .header(
                "traceparent",
                format!("00-{}-{}-01", http_trace.0, http_trace.1),
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let event_trace = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let r = common::send(
        &client,
        http::Request::post(server.url("/"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "t-1")
            .header("ce-source", "/tests")
            .header("ce-type", "trace.test")
            .header(
                "ce-traceparent",
                format!("00-{}-{}-01", event_trace.0, event_trace.1),
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);

    let deadline = Instant::now() + Duration::from_secs(15);
    let find = |name: &str, trace: &str| -> Option<Span> {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name && hex(&s.trace_id) == trace)
            .cloned()
    };
    while (find("request", http_trace.0).is_none() || find("event", event_trace.0).is_none())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (root, (trace, parent)) in [("request", http_trace), ("event", event_trace)] {
        let span = find(root, trace).unwrap_or_else(|| {
            panic!(
                "no {root} span in trace {trace}; received: {:?}",
                spans.lock().unwrap()
            )
        });
        assert_eq!(
            hex(&span.parent_span_id),
            parent,
            "{root} continues the caller's span"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let children: Vec<String> = spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.parent_span_id == span.span_id)
                .map(|s| s.name.clone())
                .collect();
            if children.contains(&"instantiate".to_string())
                && children.contains(&"handle".to_string())
            {
                break;
            }
            assert!(Instant::now() < deadline, "{root} children: {children:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
