//! The HTTP front: accepts HTTP/1.1 and h2c on one port, gives each request an id, routes it
//! to a function, and turns every failure into the status a client or Knative expects.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::engine::{BoxError, Engine, Function, InvokeError, LoadError, ResponseBody};
use crate::manifest::{Manifest, RESERVED_PREFIX};
use crate::router::RouteTable;

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// Every function of a manifest, loaded and routed.
pub struct App {
    functions: Vec<Function>,
    routes: RouteTable,
}

/// A function that could not be loaded, named with where the manifest declares it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: function `{function}`: {source}")]
pub struct FunctionLoadError {
    /// The manifest location of the function's `component` key.
    pub at: crate::manifest::Location,
    /// The function's name.
    pub function: String,
    /// What went wrong.
    pub source: Box<LoadError>,
}

impl App {
    /// Loads and pre-instantiates every function; fails on the first that cannot serve.
    pub fn load(manifest: &Manifest, engine: &Engine) -> Result<Self, FunctionLoadError> {
        let functions = manifest
            .functions
            .iter()
            .map(|spec| {
                let started = Instant::now();
                let f = engine.load(spec).map_err(|source| FunctionLoadError {
                    at: spec.component_at.clone(),
                    function: spec.name.clone(),
                    source: Box::new(source),
                })?;
                tracing::info!(
                    function = %spec.name,
                    component = %spec.component.display(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "function loaded"
                );
                Ok(f)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            functions,
            routes: manifest.routes.clone(),
        })
    }

    /// The longest deadline of any function: how long a drain may have to wait.
    pub fn longest_timeout(&self) -> Duration {
        self.functions
            .iter()
            .map(Function::timeout)
            .max()
            .unwrap_or(Duration::ZERO)
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
                _ => not_found(&path, &request_id),
            };
            return with_request_id(response, &request_id);
        }

        let Some(index) = self.routes.lookup(&path) else {
            tracing::debug!(%request_id, path, "no route");
            return with_request_id(not_found(&path, &request_id), &request_id);
        };
        let function = &self.functions[index];
        let method = req.method().clone();

        // HTTP/1.0 clients may omit Host, but wasi:http requires an authority.
        if !req.headers().contains_key(header::HOST) && req.uri().authority().is_none() {
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }

        let response = match function.handle(req, &request_id).await {
            Ok(response) => {
                tracing::debug!(
                    function = function.name(), %request_id, %method, path,
                    status = response.status().as_u16(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "request"
                );
                response
            }
            Err(error) => {
                let status = status_for(&error);
                let backtrace = match &error {
                    InvokeError::Trap { backtrace, .. } => backtrace.as_str(),
                    _ => "",
                };
                // One line per failure, so the request id finds the whole story.
                tracing::error!(
                    function = function.name(), %request_id, %method, path,
                    status = status.as_u16(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    error = %error,
                    backtrace = ?backtrace,
                    "request failed"
                );
                json(
                    status,
                    &serde_json::json!({
                        "error": public_message(&error, function.name()),
                        "function": function.name(),
                        "request_id": request_id,
                    }),
                )
            }
        };
        with_request_id(response, &request_id)
    }
}

fn status_for(error: &InvokeError) -> StatusCode {
    match error {
        InvokeError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        InvokeError::Trap { .. } | InvokeError::NoResponse(_) | InvokeError::Host(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
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

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `drain` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are often one small write; without NODELAY, Nagle plus delayed ACKs
        // can hold them back for tens of milliseconds.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        drain_timeout_ms = drain.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timed out; closing remaining connections"),
    }
    Ok(())
}
