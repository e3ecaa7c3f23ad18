//! A Spin app as `spin new -t http-rust` starts one, written with spin-sdk 7 (WASI 0.3) and
//! nothing of wasmfn, served from its own `spin.toml`:
//!
//! - `GET /hello` → a greeting made of the component variable `greeting` (Spin's
//!   variables interface, a template over the application's variables);
//! - `GET /hello/env` → the `GREETING` environment variable its component declares, and
//!   whether it can see `PATH` (it must not: only what the manifest declares);
//! - `GET /hello/count` → one more visit, counted in the `default` store (Spin's key-value
//!   interface); `GET /hello/keys` → the store's keys; `GET /hello/bench?op=get|none&n=N`
//!   → N gets of one key, for the benchmarks (benches/README.md);
//! - `GET /files/...` → the file at that path in its file system (its manifest's `files`:
//!   `static/` at `/files`, and `notes/*.txt` at `/notes`), or 404 naming the path;
//!   `/files/?list=/notes` lists a directory.
use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    match answer(&path, query).await {
        Ok(found) => found,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}\n")),
    }
}

/// A file of the component's own file system, read with std.
fn file(path: &str, query: Option<&str>) -> (StatusCode, String) {
    if let Some(dir) = query.and_then(|q| q.strip_prefix("list=")) {
        return match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.sort();
                (StatusCode::OK, format!("{}\n", names.join(",")))
            }
            Err(e) => (StatusCode::NOT_FOUND, format!("{dir}: {e}\n")),
        };
    }
    match std::fs::read_to_string(path) {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::NOT_FOUND, format!("{path}: {e}\n")),
    }
}

async fn answer(
    path: &str,
    query: Option<String>,
) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
    Ok(match path {
        "/hello" => {
            let greeting = spin_sdk::variables::get("greeting").await?;
            (StatusCode::OK, format!("{greeting} from a Spin app\n"))
        }
        "/hello/env" => {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "(unset)".into());
            let path_seen = std::env::var("PATH").is_ok();
            (
                StatusCode::OK,
                format!("GREETING={greeting} PATH seen: {path_seen}\n"),
            )
        }
        "/hello/count" => {
            let store = Store::open_default().await?;
            let visits = match store.get("visits").await? {
                Some(bytes) => String::from_utf8(bytes)?.parse::<u64>()? + 1,
                None => 1,
            };
            store.set("visits", visits.to_string()).await?;
            (StatusCode::OK, format!("visit {visits}\n"))
        }
        "/hello/bench" => {
            let param = |name: &str| {
                query
                    .as_deref()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|pair| {
                        pair.strip_prefix(name)?
                            .strip_prefix('=')
                            .map(str::to_string)
                    })
            };
            let n: u32 = param("n").and_then(|n| n.parse().ok()).unwrap_or(1);
            let store = Store::open_default().await?;
            match param("op").as_deref() {
                Some("get") => {
                    store.set("bench:get", [7u8; 64]).await?;
                    for _ in 0..n {
                        store.get("bench:get").await?;
                    }
                }
                Some("none") => {}
                other => return Ok((StatusCode::BAD_REQUEST, format!("op {other:?}\n"))),
            }
            (StatusCode::OK, format!("{n}\n"))
        }
        "/hello/keys" => {
            let store = Store::open_default().await?;
            let mut keys = store.get_keys().await.collect().await?;
            keys.sort();
            (StatusCode::OK, format!("{}\n", keys.join(",")))
        }
        other if other.starts_with("/files") => file(other, query.as_deref()),
        other => (StatusCode::NOT_FOUND, format!("nothing at {other}\n")),
    })
}
