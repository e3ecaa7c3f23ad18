//! The HTTP front: accepts HTTP/1.1 and h2c on one port, gives each request an id, routes it
//! to a function, and turns every failure into the status a client or Knative expects.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use cloudevents::{AttributesReader, Event};
use http::Method;
use http_body_util::Limited;
use tracing::Instrument;

use crate::admission::{Gate, RETRY_AFTER};
use crate::engine::{
    BoxError, Emit, EmitContext, Engine, EventOutcome, Function, InvokeError, ResponseBody,
};
use crate::events::outbox::Outbox;
use crate::events::{DecodeError, EventOptions, Mode, Subscription, codec};
pub use crate::functions::FunctionLoadError;
use crate::functions::Functions;
use crate::manifest::{Manifest, RESERVED_PREFIX, ServerLimits};
use crate::router::RouteTable;

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// The largest CloudEvents request body read; larger ones get 413.
pub const MAX_EVENT_BODY: usize = 16 * 1024 * 1024;
/// How many in-process deliveries one chain of events may take before it is stopped as a
/// loop (a function replying to its own events, say).
pub const HOP_LIMIT: u32 = 32;

/// Every function of a manifest, loaded and routed.
pub struct App {
    functions: Arc<Functions>,
    routes: RouteTable,
    /// (function index, subscription), in manifest order.
    subscriptions: Vec<(usize, Subscription)>,
    events_path: String,
    outbox: Arc<Outbox>,
    metrics: Arc<crate::metrics::Metrics>,
    limits: ServerLimits,
    /// Requests being handled (waiting for a slot or running), health checks aside.
    in_flight: Gate,
}

impl App {
    /// Loads and pre-instantiates the functions (up to `[server] loaded_functions` of them;
    /// the rest on their first request, see [`Functions`]); fails on the first that cannot
    /// serve. Emitted events are dispatched in-process.
    pub fn load(manifest: &Manifest, engine: &Engine) -> Result<Arc<Self>, FunctionLoadError> {
        Self::load_with(manifest, engine, EventOptions::default())
    }

    /// [`App::load`], with emitted events going where `events` says.
    pub fn load_with(
        manifest: &Manifest,
        engine: &Engine,
        events: EventOptions,
    ) -> Result<Arc<Self>, FunctionLoadError> {
        let functions = Functions::load(manifest, engine)?;
        let subscriptions = manifest
            .functions
            .iter()
            .enumerate()
            .flat_map(|(i, spec)| spec.events.iter().map(move |s| (i, s.clone())))
            .collect();
        Ok(Arc::new_cyclic(|app| Self {
            functions,
            routes: manifest.routes.clone(),
            subscriptions,
            events_path: manifest.events_path.clone(),
            outbox: Arc::new(Outbox::new(events, app.clone(), engine.metrics().clone())),
            metrics: engine.metrics().clone(),
            limits: manifest.server,
            in_flight: Gate::new(
                manifest.server.max_in_flight,
                "the host's in-flight requests",
            ),
        }))
    }

    /// The host-wide limits from the manifest's `[server]` table.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The metrics served at `/.well-known/wasmfn/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The longest deadline of any function: how long a drain may have to wait.
    pub fn longest_timeout(&self) -> Duration {
        self.functions.longest_timeout()
    }

    /// The manifest's functions, loaded or not.
    pub fn functions(&self) -> &Arc<Functions> {
        &self.functions
    }

    /// Answers one request. Never fails: every error becomes a response.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let request_id = request_id(&req);
        let path = req.uri().path().to_string();

        if let Some(rest) = path.strip_prefix(RESERVED_PREFIX) {
            // Loading finishes before the listener binds, so a reachable host is ready.
            let response = match rest {
                "live" => json(StatusCode::OK, &serde_json::json!({ "status": "live" })),
                "ready" => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
                "metrics" => {
                    let mut r = Response::new(
                        Full::new(Bytes::from(self.metrics.encode()))
                            .map_err(|never: Infallible| match never {})
                            .boxed_unsync(),
                    );
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                _ => not_found(&path, &request_id),
            };
            return with_request_id(response, &request_id);
        }

        // Waiting here is bounded: a host at its limit answers 503 and the client (or
        // Knative's queue-proxy) retries, rather than queueing without end.
        let _in_flight = match self.in_flight.enter(self.limits.queue_timeout).await {
            Ok(slot) => slot,
            Err(full) => {
                self.metrics.refused("in_flight");
                tracing::warn!(%request_id, path, error = %full, "request refused: host overloaded");
                return with_request_id(overloaded(&full.to_string(), &request_id), &request_id);
            }
        };

        // CloudEvents on the events path go to event handlers, once any function takes
        // events; until then a function routed there may read them as plain HTTP.
        if path == self.events_path
            && !self.subscriptions.is_empty()
            && req.method() == Method::POST
            && let Some(mode) = codec::mode_of(req.headers())
        {
            let response = self.handle_events(req, mode, &request_id).await;
            self.metrics.responded();
            return with_request_id(response, &request_id);
        }

        let Some(index) = self.routes.lookup(&path) else {
            tracing::debug!(%request_id, path, "no route");
            return with_request_id(not_found(&path, &request_id), &request_id);
        };
        let function = match self.functions.get(index).await {
            Ok(function) => function,
            Err(e) => {
                return with_request_id(
                    self.unloadable(index, &e, &request_id, &path, started),
                    &request_id,
                );
            }
        };
        let function = &function;
        let method = req.method().clone();

        // HTTP/1.0 clients may omit Host, but wasi:http requires an authority.
        if !req.headers().contains_key(header::HOST) && req.uri().authority().is_none() {
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }

        // A body announced as too large is refused before a byte of it is read; one that
        // turns out too large while streaming is cut off at the limit, and the guest's
        // answer is replaced by the same 413.
        let max_body = function.max_body();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return with_request_id(
                self.body_too_large(function, &request_id, &path, max_body, started),
                &request_id,
            );
        }
        let exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let req = {
            let exceeded = exceeded.clone();
            req.map(move |body| {
                Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(
                    move |e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            exceeded.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        e
                    },
                )
            })
        };

        let trace = traceparent(req.headers());
        let trace_id = trace
            .as_deref()
            .and_then(crate::logging::trace_id)
            .unwrap_or_default()
            .to_string();
        let span =
            crate::telemetry::root_span("request", function.name(), &request_id, trace.as_deref());
        let emit = self.emit_context(0, trace, &request_id);
        let result = function
            .handle(req, &request_id, Some(emit))
            .instrument(span)
            .await;
        if exceeded.load(std::sync::atomic::Ordering::Relaxed) {
            return with_request_id(
                self.body_too_large(function, &request_id, &path, max_body, started),
                &request_id,
            );
        }
        let response = match result {
            Ok(response) => {
                self.metrics.request(
                    function.label(),
                    response.status().as_u16(),
                    started.elapsed(),
                );
                tracing::info!(
                    function = function.name(), %request_id, trace_id, %method, path,
                    status = response.status().as_u16(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "request"
                );
                response
            }
            Err(error) => {
                let status = status_for(&error);
                self.metrics
                    .request(function.label(), status.as_u16(), started.elapsed());
                let backtrace = match &error {
                    InvokeError::Trap { backtrace, .. } => backtrace.as_str(),
                    _ => "",
                };
                // One line per failure, so the request id finds the whole story.
                tracing::error!(
                    function = function.name(), %request_id, trace_id, %method, path,
                    status = status.as_u16(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    error = %error,
                    backtrace = ?backtrace,
                    "request failed"
                );
                let mut response = json(
                    status,
                    &serde_json::json!({
                        "error": public_message(&error, function.name()),
                        "function": function.name(),
                        "request_id": request_id,
                    }),
                );
                if let InvokeError::Overloaded(_) = error {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, retry_after());
                }
                response
            }
        };
        self.metrics.responded();
        with_request_id(response, &request_id)
    }

    /// A function that failed to load on its first request: 500, with the reason in the
    /// log under the request id.
    fn unloadable(
        &self,
        index: usize,
        error: &FunctionLoadError,
        request_id: &str,
        path: &str,
        started: Instant,
    ) -> Response<ResponseBody> {
        let (name, status) = (
            self.functions.name(index),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
        self.metrics.request(
            self.functions.label(index),
            status.as_u16(),
            started.elapsed(),
        );
        tracing::error!(function = name, %request_id, path, status = status.as_u16(), error = %error, "request failed: function could not be loaded");
        self.metrics.responded();
        json(
            status,
            &serde_json::json!({
                "error": format!("function `{name}` could not be loaded; see the log for this request id"),
                "function": name,
                "request_id": request_id,
            }),
        )
    }

    fn body_too_large(
        &self,
        function: &Function,
        request_id: &str,
        path: &str,
        max_body: u64,
        started: Instant,
    ) -> Response<ResponseBody> {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        self.metrics.refused("body_too_large");
        self.metrics
            .request(function.label(), status.as_u16(), started.elapsed());
        tracing::info!(
            function = function.name(), %request_id, path, status = status.as_u16(), max_body,
            "request refused: body too large"
        );
        self.metrics.responded();
        let mut response = json(
            status,
            &serde_json::json!({
                "error": format!("the request body is larger than function `{}` accepts ({max_body} bytes, its max_body)", function.name()),
                "function": function.name(),
                "request_id": request_id,
            }),
        );
        // The rest of the body is not read, so the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

fn retry_after() -> HeaderValue {
    HeaderValue::from(RETRY_AFTER.as_secs())
}

/// 503 for a request refused because a limit stayed full (for the whole queue timeout, or
/// at once for a connection over the limit).
pub(crate) fn overloaded(reason: &str, request_id: &str) -> Response<ResponseBody> {
    let mut response = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({
            "error": format!("overloaded, retry later: {reason}"),
            "request_id": request_id,
        }),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after());
    response
}

impl App {
    fn emit_context(
        &self,
        hops: u32,
        traceparent: Option<String>,
        request_id: &str,
    ) -> EmitContext {
        EmitContext {
            emitter: self.outbox.clone(),
            hops,
            traceparent,
            request_id: request_id.to_string(),
        }
    }

    /// Answers a request that carries CloudEvents: decode, deliver each, reply in the mode
    /// the events came in.
    async fn handle_events<B>(
        &self,
        req: Request<B>,
        mode: Mode,
        request_id: &str,
    ) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_EVENT_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let (status, error) = if too_large {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a CloudEvents request body may be at most {MAX_EVENT_BODY} bytes"),
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body failed: {e}"),
                    )
                };
                tracing::info!(%request_id, status = status.as_u16(), %error, "event request refused");
                return json(
                    status,
                    &serde_json::json!({ "error": error, "request_id": request_id }),
                );
            }
        };
        let events = match codec::decode(mode, &parts.headers, &body) {
            Ok(events) => events,
            Err(e) => {
                let status = match e {
                    DecodeError::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    DecodeError::Malformed(_) => StatusCode::BAD_REQUEST,
                };
                let error = format!("malformed CloudEvent: {e}");
                tracing::info!(%request_id, status = status.as_u16(), %error, "event refused");
                return json(
                    status,
                    &serde_json::json!({ "error": error, "request_id": request_id }),
                );
            }
        };
        let header_trace = traceparent(&parts.headers);
        let mut replies = Vec::new();
        let mut rejected = None;
        for event in &events {
            let trace = event
                .extension("traceparent")
                .map(codec::extension_string)
                .or_else(|| header_trace.clone());
            match self.deliver(event, request_id, 0, trace, true).await {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => {}
                // A rejection is final, so the rest of a batch still gets delivered; the
                // batch is then answered as rejected, for the broker to dead-letter.
                Err(failure @ Failure::Reject { .. }) if mode == Mode::Batch => {
                    rejected.get_or_insert((failure, event));
                }
                // Anything retryable fails the batch now: the broker redelivers all of it.
                Err(failure) => return failure.into_response(event, request_id),
            }
        }
        if let Some((failure, event)) = rejected {
            // The 422 carries no replies, so the replies of the events that were accepted
            // travel on as emitted events instead of being dropped.
            for reply in replies {
                if let Err(reason) = self.outbox.clone().emit(reply, 1).await {
                    let failure = Failure::Emit {
                        function: "(batch)".to_string(),
                        reason,
                    };
                    failure.log(event, request_id);
                    return failure.into_response(event, request_id);
                }
            }
            return failure.into_response(event, request_id);
        }
        tracing::debug!(
            %request_id, events = events.len(), replies = replies.len(),
            elapsed_us = started.elapsed().as_micros() as u64, "events delivered"
        );
        if replies.is_empty() {
            let mut response = Response::new(empty_body());
            *response.status_mut() = StatusCode::ACCEPTED;
            return response;
        }
        let (headers, body) = codec::encode(mode, &replies);
        let mut response = Response::new(
            Full::new(body)
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().extend(headers);
        response
    }

    /// Runs every function subscribed to `event` (each once, however many of its
    /// subscriptions match). With exactly one and `inline_reply`, its reply is returned for
    /// the response; otherwise replies are emitted onward.
    async fn deliver(
        &self,
        event: &Event,
        request_id: &str,
        hops: u32,
        traceparent: Option<String>,
        inline_reply: bool,
    ) -> Result<Option<Event>, Failure> {
        let mut targets: Vec<usize> = Vec::new();
        for (i, subscription) in &self.subscriptions {
            if !targets.contains(i) && subscription.matches(event) {
                targets.push(*i);
            }
        }
        if targets.is_empty() {
            return Err(Failure::NoSubscriber);
        }
        let emit = self.emit_context(hops, traceparent.clone(), request_id);
        let trace_id = traceparent
            .as_deref()
            .and_then(crate::logging::trace_id)
            .unwrap_or_default();
        let run = |i: usize| {
            let emit = emit.clone();
            async move {
                let started = Instant::now();
                let function = match self.functions.get(i).await {
                    Ok(function) => function,
                    Err(e) => {
                        tracing::error!(function = self.functions.name(i), %request_id, error = %e, "function could not be loaded");
                        let error =
                            InvokeError::Host(format!("the function could not be loaded: {e}"));
                        self.metrics
                            .event(self.functions.label(i), event.ty(), "error");
                        return (i, Err(error));
                    }
                };
                let function = &function;
                let span = crate::telemetry::root_span(
                    "event",
                    function.name(),
                    request_id,
                    emit.traceparent.as_deref(),
                );
                let result = function
                    .handle_event(event, request_id, Some(emit))
                    .instrument(span)
                    .await;
                let outcome = outcome_label(&result);
                self.metrics.event(function.label(), event.ty(), outcome);
                tracing::info!(
                    function = function.name(), %request_id,
                    trace_id,
                    event_id = event.id(), event_type = event.ty(),
                    result = outcome,
                    elapsed_us = started.elapsed().as_micros() as u64, "event"
                );
                (i, result)
            }
        };
        let results = if let [only] = targets[..] {
            vec![run(only).await]
        } else {
            futures_util::future::join_all(targets.iter().map(|&i| run(i))).await
        };
        let inline = inline_reply && results.len() == 1;
        let (mut retryable, mut rejected, mut reply) = (None, None, None);
        for (i, result) in results {
            let function = self.functions.name(i).to_string();
            match result {
                Ok(EventOutcome::Reply(None)) => {}
                Ok(EventOutcome::Reply(Some(mut out))) => {
                    if let Some(tp) = &traceparent
                        && out.extension("traceparent").is_none()
                    {
                        out.set_extension("traceparent", tp.clone());
                    }
                    if inline {
                        reply = Some(*out);
                    } else if let Err(reason) = self.outbox.clone().emit(*out, hops + 1).await {
                        retryable.get_or_insert(Failure::Emit { function, reason });
                    }
                }
                Ok(EventOutcome::Retry { message, after }) => {
                    retryable.get_or_insert(Failure::Retry {
                        function,
                        message,
                        after,
                    });
                }
                Ok(EventOutcome::Reject(message)) => {
                    rejected.get_or_insert(Failure::Reject { function, message });
                }
                Err(error) => {
                    retryable.get_or_insert(Failure::Invoke { function, error });
                }
            }
        }
        // A retryable failure wins: the broker redelivers, and at-least-once delivery
        // lets the functions that succeeded see the event again.
        match retryable.or(rejected) {
            Some(failure) => {
                failure.log(event, request_id);
                Err(failure)
            }
            None => Ok(reply),
        }
    }

    /// Delivers an emitted event to this host's subscribers; the emitter's path when no
    /// sink is configured. Replies travel on the same way, up to [`HOP_LIMIT`] deliveries.
    pub(crate) async fn dispatch_local(&self, event: Event, hops: u32) -> Result<(), String> {
        if hops > HOP_LIMIT {
            return Err(format!(
                "event {} of type {} is {hops} in-process deliveries from its request; stopping what looks like a loop (limit {HOP_LIMIT})",
                event.id(),
                event.ty()
            ));
        }
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let trace = event.extension("traceparent").map(codec::extension_string);
        match self.deliver(&event, &request_id, hops, trace, false).await {
            Ok(_) => Ok(()),
            Err(Failure::NoSubscriber) => {
                tracing::info!(
                    %request_id, event_id = event.id(), event_type = event.ty(), event_source = event.source(),
                    "emitted event has no subscriber in this host and no sink is configured"
                );
                Ok(())
            }
            Err(failure) => Err(failure.to_string()),
        }
    }
}

/// How a delivery ended, as the `result` of its log line and metric.
fn outcome_label(result: &Result<EventOutcome, InvokeError>) -> &'static str {
    match result {
        Ok(EventOutcome::Reply(Some(_))) => "reply",
        Ok(EventOutcome::Reply(None)) => "accepted",
        Ok(EventOutcome::Retry { .. }) => "retry",
        Ok(EventOutcome::Reject(_)) => "reject",
        Err(_) => "error",
    }
}

/// Why an event was not accepted; each maps to the status Knative's delivery rules expect.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no function subscribes to this event")]
    NoSubscriber,
    #[error("function `{function}` asked for a retry: {message}")]
    Retry {
        function: String,
        message: String,
        after: Option<Duration>,
    },
    #[error("function `{function}` rejected the event: {message}")]
    Reject { function: String, message: String },
    #[error("function `{function}`: {error}")]
    Invoke {
        function: String,
        error: InvokeError,
    },
    #[error("function `{function}` replied, but the reply could not be emitted: {reason}")]
    Emit { function: String, reason: String },
}

impl Failure {
    fn log(&self, event: &Event, request_id: &str) {
        let (event_id, event_type) = (event.id(), event.ty());
        match self {
            Failure::Invoke {
                error: InvokeError::Trap { backtrace, .. },
                ..
            } => {
                tracing::error!(%request_id, event_id, event_type, error = %self, backtrace = ?backtrace, "event failed")
            }
            Failure::Invoke { .. } | Failure::Emit { .. } => {
                tracing::error!(%request_id, event_id, event_type, error = %self, "event failed")
            }
            _ => {
                tracing::warn!(%request_id, event_id, event_type, error = %self, "event not accepted")
            }
        }
    }

    fn into_response(self, event: &Event, request_id: &str) -> Response<ResponseBody> {
        let (status, error, function) = match &self {
            Failure::NoSubscriber => (
                StatusCode::NOT_FOUND,
                format!(
                    "no function subscribes to events of type {:?} from source {:?}",
                    event.ty(),
                    event.source()
                ),
                None,
            ),
            Failure::Retry {
                function, message, ..
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                message.clone(),
                Some(function),
            ),
            Failure::Reject { function, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                message.clone(),
                Some(function),
            ),
            Failure::Invoke { function, error } => (
                status_for(error),
                public_message(error, function),
                Some(function),
            ),
            Failure::Emit { function, reason } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function `{function}`'s reply could not be emitted: {reason}"),
                Some(function),
            ),
        };
        let mut response = json(
            status,
            &serde_json::json!({
                "error": error,
                "function": function,
                "event_id": event.id(),
                "request_id": request_id,
            }),
        );
        if let Failure::Retry {
            after: Some(after), ..
        } = &self
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Failure::Invoke {
            error: InvokeError::Overloaded(_),
            ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after());
        }
        response
    }
}

fn traceparent(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn empty_body() -> ResponseBody {
    http_body_util::Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn status_for(error: &InvokeError) -> StatusCode {
    match error {
        InvokeError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        InvokeError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::Trap { .. }
        | InvokeError::NoResponse(_)
        | InvokeError::InvalidReply(_)
        | InvokeError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What the client is told: enough to act on, while trap details stay in the log under the
/// request id.
fn public_message(error: &InvokeError, function: &str) -> String {
    match error {
        InvokeError::Trap { .. } => {
            format!("function `{function}` failed (trapped); see the log for this request id")
        }
        InvokeError::Deadline(d) => {
            format!("function `{function}` did not finish within its {d:?} timeout")
        }
        InvokeError::NoResponse(_) => {
            format!("function `{function}` sent no response; see the log for this request id")
        }
        InvokeError::BadRequest(reason) => reason.clone(),
        InvokeError::Overloaded(reason) => format!("overloaded, retry later: {reason}"),
        InvokeError::InvalidReply(reason) => {
            format!("function `{function}` replied with an invalid event: {reason}")
        }
        InvokeError::Host(_) => {
            "internal error in the host; see the log for this request id".to_string()
        }
    }
}

/// The caller's `x-request-id` if it is a sane token, else a new one.
fn request_id<B>(req: &Request<B>) -> String {
    if let Some(id) = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id.to_string();
    }
    uuid::Uuid::new_v4().simple().to_string()
}

fn with_request_id(mut response: Response<ResponseBody>, id: &str) -> Response<ResponseBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

fn not_found(path: &str, request_id: &str) -> Response<ResponseBody> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "error": format!("no function is routed at {path}"),
            "path": path,
            "request_id": request_id,
        }),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(value.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
