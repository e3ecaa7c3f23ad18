//! Traces: one span per request and per delivered event, with `instantiate` and `handle`
//! children, continuing the caller's W3C trace context, exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Without
//! it no span is created at all, so tracing costs nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporting tracer provider, if the environment asks for one. Shut it down at exit
/// to flush the last spans.
pub fn provider() -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if !configured {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(OtlpClient::new())
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OTLP trace export disabled: {e}");
            return None;
        }
    };
    let service = std::env::var("K_SERVICE").unwrap_or_else(|_| "wasmfn".to_string());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    ENABLED.store(true, Ordering::Relaxed);
    Some(provider)
}

/// The tracing layer that turns spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("wasmfn"))
}

/// A W3C trace context: the `traceparent` a request or event arrived with, carried onto
/// every event it causes (as the extension and as the header), so a broker and the next
/// function continue the trace. Kept as received: a malformed one is passed on untouched
/// (it is the caller's), but yields no trace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext(Arc<str>);

impl TraceContext {
    /// The name of the header and of the CloudEvents extension.
    pub const NAME: &str = "traceparent";

    /// A context as it was received; [`TraceContext::trace_id`] says whether it is valid.
    pub fn new(traceparent: impl Into<Arc<str>>) -> Self {
        Self(traceparent.into())
    }

    /// A new trace, for a request or event that brought none: every log line then has a
    /// trace id, and what the request causes (events it emits, calls it makes) carries it
    /// on. Sampled, so a collector downstream keeps it.
    pub fn start() -> Self {
        // Ids only need to be unique and non-zero, not unguessable: a fast generator and
        // hex written by hand (uuid's generator and two formats cost ~2 k instructions
        // of a request; callgrind, issue 29).
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, fastrand::u128(..).max(1), 32);
        s.push('-');
        push_hex(&mut s, u128::from(fastrand::u64(..).max(1)), 16);
        s.push_str("-01");
        Self(s.into())
    }

    /// The `traceparent` header of a request, if it has a readable one.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        headers
            .get(Self::NAME)
            .and_then(|v| v.to_str().ok())
            .map(|v| Self(v.into()))
    }

    /// The `traceparent` extension of an event.
    pub fn from_event(event: &cloudevents::Event) -> Option<Self> {
        event
            .extension(Self::NAME)
            .map(|v| Self(crate::cloudevent::extension_string(v).into()))
    }

    /// The context as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id (`00-<trace id>-<span id>-<flags>`), if the context is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        // `vv-<32 hex>-<16 hex>-ff`, then the end or (a later version's) more fields.
        let s = self.0.trim();
        let b = s.as_bytes();
        let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
        let trace = 3..35;
        (b.len() >= 55
            && (b.len() == 55 || b[55] == b'-')
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && hex(0..2)
            && hex(trace.clone())
            && hex(36..52)
            && hex(53..55)
            && b[trace.clone()].iter().any(|&c| c != b'0'))
        .then(|| &s[trace])
    }

    /// Sets the context on `event`, unless the event carries its own.
    pub fn apply_to(&self, event: &mut cloudevents::Event) {
        if event.extension(Self::NAME).is_none() {
            event.set_extension(Self::NAME, self.0.to_string());
        }
    }

    /// The context as a header value, if it is a valid one.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(&self.0).ok()
    }
}

/// A fresh request id: what a request without a usable `x-request-id`, and an event the
/// host sends itself, is logged under.
pub fn new_request_id() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, fastrand::u128(..), 32);
    id
}

/// Appends the low `digits` hex digits of `n`, zero-padded: what `{:0width$x}` writes,
/// without the formatting machinery on every request.
fn push_hex(s: &mut String, n: u128, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let buf = &mut buf[..digits];
    for (i, digit) in buf.iter_mut().rev().enumerate() {
        *digit = HEX[((n >> (i * 4)) & 0xf) as usize];
    }
    s.push_str(std::str::from_utf8(buf).expect("hex digits are ASCII"));
}

/// The trace id of an optional context, for log lines (empty without one).
pub fn trace_id(trace: Option<&TraceContext>) -> &str {
    trace.and_then(TraceContext::trace_id).unwrap_or_default()
}

/// A span named `name` whose parent is `trace` (a new trace without one), or a disabled
/// span when nothing is exported.
pub fn root_span(
    name: &'static str,
    function: &str,
    request_id: &str,
    trace: Option<&TraceContext>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = match name {
        "event" => tracing::info_span!("event", function, request_id),
        _ => tracing::info_span!("request", function, request_id),
    };
    if let Some(trace) = trace {
        let carrier = HashMap::from([(TraceContext::NAME.to_string(), trace.0.to_string())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }
    span
}

/// A child of the current span, or a disabled span when nothing is exported.
pub fn child_span(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    match name {
        "instantiate" => tracing::info_span!("instantiate"),
        _ => tracing::info_span!("handle"),
    }
}

/// OTLP's HTTP transport over hyper. The SDK exports from its own thread with a blocking
/// executor, so requests run on a small runtime of their own.
#[derive(Debug)]
struct OtlpClient {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl OtlpClient {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime starts");
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Self { runtime, client }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = request.map(Full::new);
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let response =
                tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
                    .await??;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{TraceContext, new_request_id, push_hex};

    #[test]
    fn a_started_trace_is_a_valid_one() {
        let a = TraceContext::start();
        assert_eq!(a.trace_id().map(str::len), Some(32), "{a:?}");
        assert_ne!(a.trace_id(), TraceContext::start().trace_id());
        assert_eq!(a.as_str().len(), 55, "{a:?}");
        assert!(a.as_str().ends_with("-01"), "sampled: {a:?}");
    }

    #[test]
    fn new_request_ids_are_32_hex_digits() {
        let mut s = String::new();
        push_hex(&mut s, 0xab, 4);
        assert_eq!(s, "00ab");
        let request = new_request_id();
        assert_eq!(request.len(), 32);
        assert!(request.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let id = |tp: &str| TraceContext(tp.into()).trace_id().map(str::to_string);
        assert_eq!(
            id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(id("00-xyz-b7ad6b7169203331-01"), None);
        assert_eq!(
            id("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(id(""), None);
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(
            id(&format!(" {valid}\n")).is_some(),
            "surrounding space is trimmed"
        );
        assert!(
            id(&format!("{valid}-later")).is_some(),
            "a later version's fields"
        );
        assert_eq!(id(&format!("{valid}x")), None, "flags of three characters");
        assert_eq!(id(&valid.replace("b7ad", "b7a\u{e9}")), None);
        assert_eq!(id(&valid[..54]), None);
    }
}
