//! The admin listener (`--admin 127.0.0.1:PORT`): what an operator, or `wasmfn rollout`,
//! changes in a running host. It takes no token, so it binds loopback only: reachable from
//! inside the pod (`kubectl port-forward`, a sidecar, `kubectl exec`), never through the
//! Service or the ingress, which route to the serving port alone.
//!
//! - `GET /functions`: every function with versions, each version's tag and weight.
//! - `PUT /functions/{name}/weights` with `{"blue": 90, "green": 10}`: a new split, for the
//!   next request (requests in flight keep their version); versions not named get 0. A
//!   reload (SIGHUP, `POST /reload`) returns to the manifest's weights.
//! - `POST /reload`: the SIGHUP reload.
//! - `GET /metrics`: the serving port's metrics.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::live::LiveApp;

/// Why the admin listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Not a loopback address.
    #[error(
        "--admin {0} is not a loopback address; the admin listener takes no token, so it listens on 127.0.0.1 or [::1] only"
    )]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {0} for the admin listener: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Binds the admin listener; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    if !addr.ip().is_loopback() {
        return Err(AdminError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| AdminError::Bind(addr, e))
}

/// Answers admin requests on `listener` for as long as the runtime runs.
pub async fn serve(listener: TcpListener, live: Arc<LiveApp>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let live = live.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let live = live.clone();
                async move { Ok::<_, Infallible>(answer(req, &live).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<hyper::body::Incoming>, live: &Arc<LiveApp>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["functions"]) => json_response(StatusCode::OK, functions(live)),
        (&Method::PUT, ["functions", name, "weights"]) => {
            let name = name.to_string();
            let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    );
                }
            };
            set_weights(live, &name, &body)
        }
        (&Method::POST, ["reload"]) => {
            let live = live.clone();
            match tokio::task::spawn_blocking(move || live.reload()).await {
                Ok(Ok(_)) => {
                    tracing::info!("reloaded by the admin listener");
                    json_response(StatusCode::OK, json!({"reloaded": true}))
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reload failed; the running functions keep serving");
                    error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::GET, ["metrics"]) => {
            let mut response = Response::new(Full::new(Bytes::from(live.app().metrics().encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no admin endpoint {} {path} (GET /functions, PUT /functions/NAME/weights, POST /reload, GET /metrics)",
                req.method()
            ),
        ),
    }
}

fn functions(live: &LiveApp) -> serde_json::Value {
    let app = live.app();
    let list: Vec<_> = app
        .functions()
        .splits()
        .map(|(name, split)| {
            let versions: Vec<_> = split
                .weights()
                .into_iter()
                .map(|(name, tag, weight)| json!({"name": name, "tag": tag, "weight": weight}))
                .collect();
            json!({"function": name, "versions": versions})
        })
        .collect();
    json!({ "functions": list })
}

fn set_weights(live: &LiveApp, name: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let weights: BTreeMap<String, u32> = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a JSON object of version name to weight, e.g. {{\"blue\": 90, \"green\": 10}}: {e}"
                ),
            );
        }
    };
    let app = live.app();
    let Some(split) = app.functions().split(name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("there is no function `{name}` with versions"),
        );
    };
    match split.set_weights(&weights) {
        Ok(()) => {
            tracing::info!(function = name, weights = ?weights, "weights changed by the admin listener");
            json_response(StatusCode::OK, functions(live))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": message }))
}
