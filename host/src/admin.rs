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
//!
//! Loopback is not enough on its own: a web page in a browser on the same machine can send
//! requests there, directly or through a DNS name rebound to 127.0.0.1. So a request must
//! name a loopback host (`Host: 127.0.0.1:PORT`, `localhost`, `[::1]`), and a request that
//! changes something must say `Content-Type: application/json` (which a page cannot send
//! across sites without the browser asking first) and carry no foreign `Origin`. Like the
//! serving port, a connection has `[server] header_timeout` (10 s) to send its headers, and
//! at most 64 are open at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// Admin connections open at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;

/// Answers admin requests on `listener` for as long as the runtime runs.
pub async fn serve(listener: TcpListener, live: Arc<LiveApp>) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "admin connection refused: too many open"
            );
            continue;
        };
        let live = live.clone();
        let header_timeout = live.app().limits().header_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let live = live.clone();
                async move { Ok::<_, Infallible>(answer(req, &live).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // The serving port's limit (`[server] header_timeout`, 10 s by default).
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

/// Whether `host` (a `Host` header or URI authority: name or address, and a port) names
/// this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request may not reach the admin endpoints, if it may not (see the module's
/// documentation).
fn refusal(req: &Request<hyper::body::Incoming>) -> Option<Response<Full<Bytes>>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(loopback_host) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the admin listener answers requests for 127.0.0.1, [::1] or localhost only (Host)"
                .to_string(),
        ));
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""));
    let foreign = origin.is_some_and(|o| {
        o.split_once("://")
            .is_none_or(|(_, host)| !loopback_host(host))
    });
    if foreign {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the admin listener refuses changes from a web page of another origin".to_string(),
        ));
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a change through the admin listener must be sent as Content-Type: application/json"
                .to_string(),
        ));
    }
    None
}

async fn answer(req: Request<hyper::body::Incoming>, live: &Arc<LiveApp>) -> Response<Full<Bytes>> {
    if let Some(refused) = refusal(&req) {
        tracing::warn!(method = %req.method(), path = req.uri().path(), "admin request refused");
        return refused;
    }
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
            let mut response = Response::new(Full::new(Bytes::from(live.app().metrics_text())));
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

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_hosts_are_this_machine() {
        for host in [
            "127.0.0.1:9901",
            "localhost:9901",
            "LOCALHOST",
            "[::1]:9901",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:9901",
            "10.0.0.1:9901",
            "[::2]:80",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
