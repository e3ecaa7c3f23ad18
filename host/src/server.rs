//! The HTTP front: gives each request an id, answers the host's own paths, hands CloudEvents
//! on the events path to the [`Dispatcher`] and every other request to the function routed
//! at its path, within the host's and the function's limits. Every refusal and failure is a
//! [`Failure`], and one exit records the metrics, writes the log line and sets
//! `x-request-id`, whichever way the request went.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use crate::admission::Gate;
use crate::capabilities::{Capabilities, CapabilityError, CapabilityOptions};
use crate::cloudevent;
use crate::engine::{BoxError, Engine, RequestBody, ResponseBody};
use crate::events::{Dispatcher, EventOptions, Recipients};
use crate::failure::{Failure, full};
pub use crate::functions::FunctionLoadError;
use crate::functions::Functions;
use crate::manifest::routes::{RouteMatch, RoutePattern, RouteTable, Segment};
use crate::manifest::{DELIVERY_PREFIX, Manifest, RESERVED_PREFIX, ServerLimits};
use crate::metrics::{Metrics, Refusal, Series};
use crate::telemetry::{self, TraceContext};
use crate::traffic::VERSION_HEADER;

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// Every function of a manifest, loaded and routed.
pub struct App {
    functions: Arc<Functions>,
    routes: RouteTable,
    events: Arc<Dispatcher>,
    events_path: String,
    metrics: Arc<Metrics>,
    limits: ServerLimits,
    /// Requests being handled (waiting for a slot or running), health checks aside;
    /// shared by the apps a reload puts in place, so the limit holds across them.
    in_flight: Gate,
    /// What a reload needs to build the next app beside this one.
    engine: Engine,
    options: HostOptions,
    capabilities: Arc<Capabilities>,
}

/// How a host is set up beyond its manifest.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Where emitted events go.
    pub events: EventOptions,
    /// Where stores keep their data, which CAs outbound HTTPS trusts.
    pub capabilities: CapabilityOptions,
}

/// Why a manifest's functions cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AppLoadError {
    /// A function.
    #[error(transparent)]
    Function(#[from] FunctionLoadError),
    /// A store or the outbound client.
    #[error(transparent)]
    Capability(#[from] CapabilityError),
}

/// Who answered a request, for its metrics and log line.
#[derive(Clone, Copy)]
enum Answerer<'a> {
    /// No function: the request was refused, or nothing is routed at its path.
    Nobody,
    /// A function.
    Function {
        /// Its name.
        name: &'a str,
        /// The version that answered (empty for a function without versions).
        version: &'static str,
        /// Where its metrics go.
        series: &'a Series,
    },
    /// The event dispatcher, which logs each delivery itself.
    Events,
}

/// How a request ended, before it becomes a response.
struct Outcome<'a> {
    answerer: Answerer<'a>,
    result: Result<Response<ResponseBody>, Failure>,
    /// The event a failure concerns, on the events path.
    event_id: Option<String>,
}

impl<'a> Outcome<'a> {
    fn failed(answerer: Answerer<'a>, failure: Failure) -> Self {
        Self {
            answerer,
            result: Err(failure),
            event_id: None,
        }
    }
}

impl App {
    /// Loads and pre-instantiates the functions (up to `[server] loaded_functions` of them;
    /// the rest on their first request, see [`Functions`]); fails on the first that cannot
    /// serve. Emitted events are dispatched in-process; stores keep their data beside the
    /// manifest.
    pub fn load(manifest: &Manifest, engine: &Engine) -> Result<Arc<Self>, AppLoadError> {
        Self::load_with(manifest, engine, HostOptions::default())
    }

    /// [`App::load`], set up as `options` says.
    pub fn load_with(
        manifest: &Manifest,
        engine: &Engine,
        options: HostOptions,
    ) -> Result<Arc<Self>, AppLoadError> {
        let capabilities = Arc::new(Capabilities::open(manifest, &options.capabilities)?);
        let in_flight = Gate::new(
            manifest.server.max_in_flight,
            "the host's in-flight requests",
        );
        Self::build(
            manifest,
            engine,
            options,
            capabilities,
            in_flight,
            manifest.server,
        )
    }

    /// The app for `manifest` to take this one's place: it shares the engine, the
    /// in-flight limit and the key-value stores whose declaration did not change (their
    /// data, and Redis connections, stay), and loads only what the compile cache does not
    /// hold. `[server]` limits apply from the next start.
    pub fn reloaded(&self, manifest: &Manifest) -> Result<Arc<Self>, AppLoadError> {
        let capabilities = Arc::new(
            self.capabilities
                .reopen(manifest, &self.options.capabilities)?,
        );
        if manifest.server != self.limits {
            tracing::warn!("the [server] table changed; its limits apply from the next start");
        }
        Self::build(
            manifest,
            &self.engine,
            self.options.clone(),
            capabilities,
            self.in_flight.clone(),
            self.limits,
        )
    }

    fn build(
        manifest: &Manifest,
        engine: &Engine,
        options: HostOptions,
        capabilities: Arc<Capabilities>,
        in_flight: Gate,
        limits: ServerLimits,
    ) -> Result<Arc<Self>, AppLoadError> {
        let functions = Functions::load(manifest, engine, &capabilities)?;
        let metrics = engine.metrics().clone();
        let events = options.events.clone();
        Ok(Arc::new(Self {
            events: Dispatcher::new(manifest, functions.clone(), events, metrics.clone()),
            functions,
            routes: manifest.routes.clone(),
            events_path: manifest.events_path.clone(),
            metrics,
            limits,
            in_flight,
            engine: engine.clone(),
            options,
            capabilities,
        }))
    }

    /// The host-wide limits from the manifest's `[server]` table.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The Prometheus text of [`App::metrics`], with each store's state as of now.
    pub fn metrics_text(&self) -> String {
        for (store, up) in self.capabilities.store_health() {
            self.metrics.set_store_up(&store, up);
        }
        self.metrics.encode()
    }

    /// The engine its functions run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The metrics served at `/.well-known/wasmfn/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The longest deadline of any function: how long a drain may have to wait.
    pub fn longest_timeout(&self) -> Duration {
        self.functions.longest_timeout()
    }

    /// Fires the functions' schedules from this host until the handle is dropped (outside
    /// Knative; there PingSources do it).
    pub fn start_schedules(&self) -> crate::events::schedule::Scheduler {
        self.events.start_schedules()
    }

    /// The manifest's functions, loaded or not.
    pub fn functions(&self) -> &Arc<Functions> {
        &self.functions
    }

    /// Answers one request. Never fails: every error becomes a response.
    pub async fn handle<B: RequestBody>(&self, req: Request<B>) -> Response<ResponseBody> {
        self.handle_from(req, None).await
    }

    /// [`App::handle`] for a request from `client`, the peer of its connection.
    pub async fn handle_from<B: RequestBody>(
        &self,
        req: Request<B>,
        client: Option<SocketAddr>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let path = req.uri().path().to_string();
        // Probes and scrapes are the platform's, not clients' requests: they are never
        // refused, and not counted, or a probe a second would swamp the request figures and
        // pass for the first response of a cold start.
        if let Some(rest) = path.strip_prefix(RESERVED_PREFIX)
            && let Some(response) = self.host_endpoint(rest)
        {
            return with_request_id(response, &request_id);
        }
        let method = req.method().clone();
        // A request without a trace starts one, so its log line, and those of everything
        // it causes, share a trace id; with OTLP on, its span hangs off this parent, which
        // is never exported.
        let trace = TraceContext::from_headers(req.headers()).unwrap_or_else(TraceContext::start);
        let outcome = self.answer(req, &path, &request_id, &trace, client).await;

        // The one exit.
        let elapsed = started.elapsed();
        let trace_id = telemetry::trace_id(Some(&trace));
        let response = match outcome.result {
            Ok(response) => {
                if let Answerer::Function {
                    name: function,
                    version,
                    ..
                } = outcome.answerer
                {
                    tracing::info!(
                        function, version, %request_id, trace_id, %method, path,
                        status = response.status().as_u16(),
                        elapsed_us = elapsed.as_micros() as u64,
                        "request"
                    );
                }
                response
            }
            Err(failure) => {
                log_failure(
                    &failure,
                    outcome.answerer,
                    &request_id,
                    trace_id,
                    &method,
                    &path,
                    elapsed,
                );
                failure.into_response(&request_id, Some(&path), outcome.event_id.as_deref())
            }
        };
        let status = response.status().as_u16();
        let version = match outcome.answerer {
            Answerer::Function {
                version, series, ..
            } => {
                self.metrics.answered(series, status, elapsed);
                version
            }
            Answerer::Nobody | Answerer::Events => {
                self.metrics.request("", "", status, elapsed);
                ""
            }
        };
        self.metrics.responded();
        let mut response = with_request_id(response, &request_id);
        // Which version answered, so a tester (and a client's logs) can tell.
        if !version.is_empty() {
            response
                .headers_mut()
                .insert(VERSION_HEADER, HeaderValue::from_static(version));
        }
        response
    }

    /// `live`, `ready` and `metrics` under [`RESERVED_PREFIX`]; `None` for any other path
    /// there, which is answered as an unrouted request.
    fn host_endpoint(&self, rest: &str) -> Option<Response<ResponseBody>> {
        // Loading finishes before the listener binds, so a reachable host is ready.
        let (body, content_type) = match rest {
            "live" => (r#"{"status":"live"}"#.into(), "application/json"),
            "ready" => (r#"{"status":"ready"}"#.into(), "application/json"),
            "metrics" => (
                self.metrics_text(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            _ => return None,
        };
        let mut response = Response::new(full(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Some(response)
    }

    async fn answer<B: RequestBody>(
        &self,
        req: Request<B>,
        path: &str,
        request_id: &str,
        trace: &TraceContext,
        client: Option<SocketAddr>,
    ) -> Outcome<'_> {
        // RFC 9112 §3.2: an HTTP/1.1 request names its host exactly once, and a server
        // answers 400 otherwise. Only for requests from a socket: in-process callers (tests,
        // `wasmfn invoke`) build theirs without one.
        if client.is_some()
            && req.version() == http::Version::HTTP_11
            && req.headers().get_all(http::header::HOST).iter().count() != 1
        {
            let reason = "an HTTP/1.1 request must carry exactly one Host header".to_string();
            return Outcome::failed(Answerer::Nobody, Failure::BadRequest { reason });
        }
        // Waiting here is bounded: a host at its limit answers 503 and the client (or
        // Knative's queue-proxy) retries, rather than queueing without end.
        let _in_flight = match self.in_flight.enter(self.limits.queue_timeout).await {
            Ok(slot) => slot,
            Err(full) => {
                self.metrics.refused(Refusal::InFlight);
                let reason = full.to_string();
                return Outcome::failed(Answerer::Nobody, Failure::Overloaded { reason });
            }
        };
        let _counted = self.metrics.request_admitted();
        if let Some(name) = path.strip_prefix(DELIVERY_PREFIX) {
            return self.delivery(req, path, name, request_id).await;
        }
        // CloudEvents on the events path go to event handlers, once any function takes
        // events; until then a function routed there may read them as plain HTTP.
        if path == self.events_path
            && self.events.has_subscribers()
            && req.method() == Method::POST
            && let Some(mode) = cloudevent::mode_of(req.headers())
        {
            return self
                .deliver(req, mode, Recipients::Subscribers, request_id)
                .await;
        }
        match self.routes.matched(path) {
            Some(route) => self.request(route, req, request_id, trace, client).await,
            None => {
                let path = path.to_string();
                Outcome::failed(Answerer::Nobody, Failure::NoRoute { path })
            }
        }
    }

    /// A Trigger's delivery to function `name`: only that function runs, once, however
    /// many of its subscriptions (or other functions') match.
    async fn delivery<B: RequestBody>(
        &self,
        req: Request<B>,
        path: &str,
        name: &str,
        request_id: &str,
    ) -> Outcome<'_> {
        let function = self
            .functions
            .index_of(name)
            .filter(|&i| self.events.takes_events(i));
        let Some(i) = function else {
            let path = path.to_string();
            return Outcome::failed(Answerer::Nobody, Failure::NoRoute { path });
        };
        let mode = cloudevent::mode_of(req.headers()).filter(|_| req.method() == Method::POST);
        let Some(mode) = mode else {
            let reason =
                format!("{path} takes CloudEvents, POSTed in binary, structured or batched mode");
            return Outcome::failed(Answerer::Events, Failure::MalformedEvent { reason });
        };
        self.deliver(req, mode, Recipients::Only(i), request_id)
            .await
    }

    /// A request for function `index`, routed at its path.
    #[inline(always)]
    async fn request<B: RequestBody>(
        &self,
        route: RouteMatch<'_>,
        mut req: Request<B>,
        request_id: &str,
        trace: &TraceContext,
        client: Option<SocketAddr>,
    ) -> Outcome<'_> {
        let index = route.function;
        let version = self.functions.choose(index, req.headers());
        let answerer = Answerer::Function {
            name: self.functions.name(index),
            version: self.functions.version_label(index, version),
            series: self.functions.series(index, version),
        };
        // A body announced as too large is refused before a byte of it is read; one that
        // turns out too large while streaming is cut off at the limit, and the guest's
        // answer is replaced by the same 413.
        let max_body = self.functions.spec(index).max_body;
        let too_large = || {
            self.metrics.refused(Refusal::BodyTooLarge);
            Outcome::failed(
                answerer,
                Failure::BodyTooLarge {
                    function: Some(self.functions.name(index).to_string()),
                    limit: max_body,
                },
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return too_large();
        }
        // HTTP/1.0 clients may omit Host, but wasi:http requires an authority.
        if !req.headers().contains_key(header::HOST) && req.uri().authority().is_none() {
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
        if self.functions.spec(index).spin {
            spin_headers(&mut req, route, client);
        }
        let (req, exceeded) = limit_body(req, max_body);
        let name = self.functions.name(index);
        let span = telemetry::root_span("request", name, request_id, Some(trace));
        let emit = self.events.emit_context(0, Some(trace.clone()), request_id);
        let result = self
            .functions
            .invoke(index, version, span, move |function| {
                function.handle(req, request_id, Some(emit))
            })
            .await;
        if exceeded.load(Ordering::Relaxed) {
            return too_large();
        }
        Outcome {
            answerer,
            result,
            event_id: None,
        }
    }
}

/// The headers Spin gives a component about the route that matched, so Spin SDK routers
/// and apps that read them work: for route `/shop/...` and `GET /shop/cart?x=1`,
/// `spin-full-url` `http://<host>/shop/cart?x=1`, `spin-path-info` `/cart`,
/// `spin-matched-route` and `spin-raw-component-route` `/shop/...`,
/// `spin-component-route` `/shop`, `spin-base-path` `/`, and `spin-client-addr`, the peer
/// of the connection (behind Knative, its queue-proxy).
fn spin_headers<B>(req: &mut Request<B>, route: RouteMatch<'_>, client: Option<SocketAddr>) {
    let path = req.uri().path().to_string();
    let mut params = Vec::new();
    let (component_route, raw_route, path_info) = match (route.params, route.prefix) {
        // `/users/:id` or `/users/:id/...`: the route as written, and
        // `spin-path-match-id` for each parameter.
        (Some(segments), prefix) => {
            for (segment, value) in segments.iter().zip(path.split('/').skip(1)) {
                if let Segment::Param(name) = segment {
                    params.push((format!("spin-path-match-{name}"), value.to_string()));
                }
            }
            let written = RoutePattern::Params(segments.to_vec()).to_string();
            match (prefix, written.strip_suffix("/*")) {
                (Some(len), Some(before)) => (
                    before.to_string(),
                    format!("{before}/..."),
                    path[len..].to_string(),
                ),
                _ => (written.clone(), written, String::new()),
            }
        }
        (None, Some(len)) => {
            let prefix = &path[..len];
            (
                prefix.to_string(),
                format!("{prefix}/..."),
                path[len..].to_string(),
            )
        }
        (None, None) => (path.clone(), path.clone(), String::new()),
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or(path.as_str(), |pq| pq.as_str())
        .to_string();
    let headers = req.headers_mut();
    for (name, value) in [
        ("spin-full-url", format!("http://{host}{target}")),
        ("spin-path-info", path_info),
        ("spin-matched-route", raw_route.clone()),
        ("spin-raw-component-route", raw_route),
        ("spin-component-route", component_route),
        ("spin-base-path", "/".to_string()),
    ]
    .into_iter()
    .chain(client.map(|addr| ("spin-client-addr", addr.to_string())))
    {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    for (name, value) in params {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
}

/// `req` with its body cut off past `max_body` bytes, and whether that happened.
fn limit_body<B: RequestBody>(
    req: Request<B>,
    max_body: u64,
) -> (
    Request<impl hyper::body::Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Arc<AtomicBool>,
) {
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = exceeded.clone();
    let req = req.map(move |body| {
        Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                flag.store(true, Ordering::Relaxed);
            }
            e
        })
    });
    (req, exceeded)
}

impl App {
    async fn deliver<B: RequestBody>(
        &self,
        req: Request<B>,
        mode: cloudevent::Mode,
        to: Recipients,
        request_id: &str,
    ) -> Outcome<'_> {
        let (result, event_id) = match self.events.handle_request(req, mode, to, request_id).await {
            Ok(response) => (Ok(response), None),
            Err(refused) => (Err(refused.failure), refused.event_id),
        };
        Outcome {
            answerer: Answerer::Events,
            result,
            event_id,
        }
    }
}

/// One line per failed request, so the request id finds the whole story: an error when the
/// host or a guest failed, less for what clients and load cause. The dispatcher has logged
/// each event already.
fn log_failure(
    failure: &Failure,
    answerer: Answerer<'_>,
    request_id: &str,
    trace_id: &str,
    method: &Method,
    path: &str,
    elapsed: Duration,
) {
    let status = failure.status().as_u16();
    let elapsed_us = elapsed.as_micros() as u64;
    let function = match answerer {
        Answerer::Function { name, .. } => name,
        Answerer::Events => {
            tracing::debug!(%request_id, status, error = %failure, "events request not accepted");
            return;
        }
        Answerer::Nobody => "",
    };
    if failure.is_fault() {
        let backtrace = failure.backtrace().unwrap_or_default();
        tracing::error!(
            function, %request_id, trace_id, %method, path, status, elapsed_us,
            error = %failure, backtrace = ?backtrace, "request failed"
        );
    } else if let Failure::NoRoute { .. } = failure {
        tracing::debug!(%request_id, path, "no route");
    } else if failure.status() == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(function, %request_id, path, status, error = %failure, "request refused: overloaded");
    } else {
        tracing::info!(function, %request_id, path, status, error = %failure, "request refused");
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
    telemetry::new_request_id()
}

pub(crate) fn with_request_id(
    mut response: Response<ResponseBody>,
    id: &str,
) -> Response<ResponseBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}
