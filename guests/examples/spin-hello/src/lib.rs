//! A Spin app as `spin new -t http-rust` starts one, written with spin-sdk 7 (WASI 0.3) and
//! nothing of wasmfn, served from its own `spin.toml`:
//!
//! - `GET /hello` → a greeting;
//! - `GET /hello/env` → the `GREETING` environment variable its component declares, and
//!   whether it can see `PATH` (it must not: only what the manifest declares);
//! - anything under `/files/...` → the path it was asked for (a wildcard route).
use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/hello" => (StatusCode::OK, "Hello from a Spin app\n".to_string()),
        "/hello/env" => {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "(unset)".into());
            let path_seen = std::env::var("PATH").is_ok();
            (
                StatusCode::OK,
                format!("GREETING={greeting} PATH seen: {path_seen}\n"),
            )
        }
        other if other.starts_with("/files") => (StatusCode::OK, format!("asked for {other}\n")),
        other => (StatusCode::NOT_FOUND, format!("nothing at {other}\n")),
    }
}
