//! The sink emitted events are POSTed to (`K_SINK`; in a cluster, a Knative Broker), in
//! binary mode with bounded retries, and the settings that choose it.

use std::time::Duration;

use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cloudevent::{self, Mode};
use crate::telemetry::TraceContext;

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

/// Settings for emitted events that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EventOptionsError {
    /// The sink URL is not one the host can POST to.
    #[error("sink {url:?} {problem}")]
    Sink {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `K_CE_OVERRIDES` is not the JSON Knative's SinkBinding writes.
    #[error("K_CE_OVERRIDES must be JSON like {{\"extensions\": {{\"name\": \"value\"}}}}: {0}")]
    Overrides(String),
    /// An extension name in `K_CE_OVERRIDES` breaks the CloudEvents naming rule.
    #[error("K_CE_OVERRIDES: {0}")]
    OverrideName(String),
}

/// Why the sink did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// It answered with a status Knative does not retry.
    #[error("sink {uri} refused the event with {status}")]
    Refused {
        /// The sink.
        uri: String,
        /// Its answer.
        status: http::StatusCode,
    },
    /// Every attempt failed with a status or error Knative retries.
    #[error("sink {uri} did not accept the event after {SINK_ATTEMPTS} attempts: {last}")]
    GaveUp {
        /// The sink.
        uri: String,
        /// What the last attempt got.
        last: String,
    },
}

impl EventOptions {
    /// Reads the sink URL and the `K_CE_OVERRIDES` JSON (`{"extensions": {"name": "value"}}`).
    pub fn new(sink: Option<&str>, overrides: Option<&str>) -> Result<Self, EventOptionsError> {
        let sink = sink.filter(|s| !s.is_empty()).map(Sink::new).transpose()?;
        let overrides = match overrides.filter(|s| !s.trim().is_empty()) {
            None => Vec::new(),
            Some(json) => parse_overrides(json)?,
        };
        Ok(Self { sink, overrides })
    }
}

fn parse_overrides(json: &str) -> Result<Vec<(String, String)>, EventOptionsError> {
    #[derive(serde::Deserialize)]
    struct Overrides {
        #[serde(default)]
        extensions: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let parsed: Overrides =
        serde_json::from_str(json).map_err(|e| EventOptionsError::Overrides(e.to_string()))?;
    parsed
        .extensions
        .into_iter()
        .map(|(name, value)| {
            cloudevent::check_extension_name(&name).map_err(EventOptionsError::OverrideName)?;
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
    pub fn new(url: &str) -> Result<Self, EventOptionsError> {
        let problem = |problem: String| EventOptionsError::Sink {
            url: url.to_string(),
            problem,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| problem(format!("is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(problem(
                    "is https, which sinks do not support yet; use the broker's cluster-local http address".to_string(),
                ));
            }
            _ => return Err(problem("must be an http:// URL".to_string())),
        }
        if uri.host().is_none() {
            return Err(problem("has no host".to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { uri, client })
    }

    /// POSTs `event` in binary mode, retrying what Knative retries (network errors, 404,
    /// 408, 409, 429, 5xx) with exponential backoff, honouring `Retry-After`.
    pub async fn send(&self, event: &Event) -> Result<(), SendError> {
        let (headers, body) = cloudevent::encode(Mode::Binary, std::slice::from_ref(event));
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=SINK_ATTEMPTS {
            let mut request = http::Request::post(self.uri.clone())
                .body(Full::new(body.clone()))
                .expect("a POST to a parsed URI is a valid request");
            request.headers_mut().extend(headers.clone());
            // Knative traces by the traceparent header, not only the extension.
            if let Some(v) = TraceContext::from_event(event).and_then(|t| t.header_value()) {
                request.headers_mut().insert(TraceContext::NAME, v);
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
                        return Err(SendError::Refused {
                            uri: self.uri.to_string(),
                            status,
                        });
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
        Err(SendError::GaveUp {
            uri: self.uri.to_string(),
            last: last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
                .to_string()
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

    /// A sink on loopback answering the scripted statuses in turn (with `Retry-After`
    /// where given), then 200; and how many requests it got.
    async fn scripted(
        script: &[(u16, Option<&'static str>)],
    ) -> (Sink, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let (count, script) = (attempts.clone(), Arc::new(script.to_vec()));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (count, script) = (count.clone(), script.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let (status, after) = script.get(n).copied().unwrap_or((200, None));
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        if let Some(after) = after {
                            response.headers_mut().insert(
                                http::header::RETRY_AFTER,
                                http::HeaderValue::from_static(after),
                            );
                        }
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (Sink::new(&format!("http://{addr}/")).unwrap(), attempts)
    }

    fn event() -> Event {
        use cloudevents::{EventBuilder, EventBuilderV10};
        EventBuilderV10::new()
            .id("1")
            .source("/tests")
            .ty("t")
            .build()
            .unwrap()
    }

    fn attempts(a: &std::sync::atomic::AtomicUsize) -> usize {
        a.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_sink_retries_what_knative_retries_and_nothing_else() {
        // 404, 408, 409, 429 and 5xx are retried, up to the fifth attempt.
        let retried = [(404, None), (408, None), (409, None), (429, None)];
        let (sink, count) = scripted(&retried).await;
        sink.send(&event()).await.unwrap();
        assert_eq!(attempts(&count), 5);
        let (sink, count) = scripted(&[(500, None); 5]).await;
        let e = sink.send(&event()).await.unwrap_err();
        assert!(matches!(e, SendError::GaveUp { .. }), "{e}");
        assert_eq!(attempts(&count), SINK_ATTEMPTS as usize);
        // Any other refusal is final.
        for status in [400, 403, 413] {
            let (sink, count) = scripted(&[(status, None)]).await;
            let e = sink.send(&event()).await.unwrap_err();
            assert!(matches!(e, SendError::Refused { .. }), "{status}: {e}");
            assert_eq!(attempts(&count), 1, "{status}");
        }
        // A network error is retried too: a port nothing listens on is tried every time.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Sink::new(&format!("http://127.0.0.1:{port}/"))
            .unwrap()
            .send(&event())
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::GaveUp { .. }), "{e}");
    }

    #[tokio::test]
    async fn the_sink_waits_as_long_as_retry_after_says() {
        // The backoff alone would wait 100 ms; Retry-After asks for a second (a lower
        // bound, which no machine can undercut).
        let (sink, count) = scripted(&[(503, Some("1"))]).await;
        let started = std::time::Instant::now();
        sink.send(&event()).await.unwrap();
        assert_eq!(attempts(&count), 2);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
