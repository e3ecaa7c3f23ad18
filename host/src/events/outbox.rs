//! Where emitted events go: to the sink (`K_SINK`, in a cluster a Knative Broker) over HTTP
//! in binary mode with bounded retries, or, without a sink, to the functions of this host
//! that subscribe to them (a local Sequence, for development).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::codec::{self, Mode};
use crate::engine::Emit;
use crate::server::App;

/// How many times one event is offered to the sink before emitting fails.
const SINK_ATTEMPTS: u32 = 5;
/// The first pause between attempts; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause, also the cap on a sink's `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for emitted events, from `--sink`/`K_SINK` and `K_CE_OVERRIDES`.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    /// Where emitted events are POSTed; `None` dispatches them in-process.
    pub sink: Option<Sink>,
    /// Extension attributes set on every emitted event (Knative's `K_CE_OVERRIDES`).
    pub overrides: Vec<(String, String)>,
}

impl EventOptions {
    /// Reads the sink URL and the `K_CE_OVERRIDES` JSON (`{"extensions": {"name": "value"}}`).
    pub fn new(sink: Option<&str>, overrides: Option<&str>) -> Result<Self, String> {
        let sink = sink.filter(|s| !s.is_empty()).map(Sink::new).transpose()?;
        let overrides = match overrides.filter(|s| !s.trim().is_empty()) {
            None => Vec::new(),
            Some(json) => parse_overrides(json)?,
        };
        Ok(Self { sink, overrides })
    }
}

fn parse_overrides(json: &str) -> Result<Vec<(String, String)>, String> {
    #[derive(serde::Deserialize)]
    struct Overrides {
        #[serde(default)]
        extensions: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let parsed: Overrides = serde_json::from_str(json).map_err(|e| {
        format!("K_CE_OVERRIDES must be JSON like {{\"extensions\": {{\"name\": \"value\"}}}}: {e}")
    })?;
    parsed
        .extensions
        .into_iter()
        .map(|(name, value)| {
            codec::check_extension_name(&name).map_err(|e| format!("K_CE_OVERRIDES: {e}"))?;
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            Ok((name, value))
        })
        .collect()
}

/// An HTTP endpoint that accepts CloudEvents, such as a Knative Broker's ingress.
#[derive(Clone)]
pub struct Sink {
    uri: http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("uri", &self.uri).finish()
    }
}

impl Sink {
    /// A sink at `url` (`http://`; in a cluster the broker ingress is plain HTTP).
    pub fn new(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("sink {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "sink {url:?}: https sinks are not supported yet; use the broker's cluster-local http address"
                ));
            }
            _ => return Err(format!("sink {url:?} must be an http:// URL")),
        }
        if uri.host().is_none() {
            return Err(format!("sink {url:?} has no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { uri, client })
    }

    /// POSTs `event` in binary mode, retrying what Knative retries (network errors, 404,
    /// 408, 409, 429, 5xx) with exponential backoff, honouring `Retry-After`.
    pub async fn send(&self, event: &Event) -> Result<(), String> {
        let (headers, body) = codec::encode(Mode::Binary, std::slice::from_ref(event));
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=SINK_ATTEMPTS {
            let mut request = http::Request::post(self.uri.clone())
                .body(Full::new(body.clone()))
                .expect("a POST to a parsed URI is a valid request");
            request.headers_mut().extend(headers.clone());
            // Knative traces by the traceparent header, not only the extension.
            if let Some(tp) = event.extension("traceparent")
                && let Ok(v) = http::HeaderValue::from_str(&codec::extension_string(tp))
            {
                request.headers_mut().insert("traceparent", v);
            }
            let mut wait = backoff;
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    // Drain the body so the connection can be reused.
                    let _ = response.into_body().collect().await;
                    if status.is_success() {
                        return Ok(());
                    }
                    let retryable = matches!(status.as_u16(), 404 | 408 | 409 | 429)
                        || status.is_server_error();
                    if !retryable {
                        return Err(format!("sink {} refused the event with {status}", self.uri));
                    }
                    last_error = format!("answered {status}");
                    if let Some(after) = retry_after {
                        wait = after;
                    }
                }
                Ok(Err(e)) => last_error = format!("request failed: {e}"),
                Err(_) => last_error = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
            if attempt < SINK_ATTEMPTS {
                tracing::warn!(sink = %self.uri, event_id = event.id(), attempt, error = %last_error, "sink did not accept the event; retrying");
                tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(format!(
            "sink {} did not accept the event after {SINK_ATTEMPTS} attempts: {last_error}",
            self.uri
        ))
    }
}

/// The [`Emit`] the engine hands to every invocation.
pub(crate) struct Outbox {
    options: EventOptions,
    app: Weak<App>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Outbox {
    pub(crate) fn new(
        options: EventOptions,
        app: Weak<App>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            options,
            app,
            metrics,
        }
    }
}

impl Emit for Outbox {
    fn emit(
        self: Arc<Self>,
        mut event: Event,
        hops: u32,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move {
            for (name, value) in &self.options.overrides {
                event.set_extension(name, value.clone());
            }
            let result = match &self.options.sink {
                Some(sink) => sink.send(&event).await,
                None => match self.app.upgrade() {
                    Some(app) => app.dispatch_local(event, hops).await,
                    None => Err("the host is shutting down".to_string()),
                },
            };
            self.metrics.emitted(result.is_ok());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_sinks_are_checked_at_start() {
        let o =
            EventOptions::new(None, Some(r#"{"extensions":{"cluster":"eu","shard":3}}"#)).unwrap();
        assert_eq!(
            o.overrides,
            vec![
                ("cluster".into(), "eu".into()),
                ("shard".into(), "3".into())
            ]
        );
        assert!(EventOptions::new(None, Some("{bad")).is_err());
        assert!(EventOptions::new(None, Some(r#"{"extensions":{"Bad_Name":"x"}}"#)).is_err());
        assert!(
            EventOptions::new(Some("https://broker"), None)
                .unwrap_err()
                .contains("https")
        );
        assert!(EventOptions::new(Some("broker-ingress"), None).is_err());
        assert!(
            EventOptions::new(
                Some("http://broker-ingress.knative-eventing.svc/ns/default"),
                None
            )
            .unwrap()
            .sink
            .is_some()
        );
    }
}
