//! A plain WASI 0.3 HTTP component, without our SDK, as the `wasip3` crate builds them. One
//! instance may serve many requests, several at once, so each answer says which instance
//! served it and how many requests that instance has taken (`x-instance`, `x-served`).
//! It answers by the last segment of the path, so it can be routed under any prefix:
//!
//! - `hello` (or `/`): a greeting, its body written through a 0.3 stream;
//! - `echo`: the request body streamed back chunk by chunk as it arrives, and the
//!   request's trailers sent back as the response's;
//! - `sleep?ms=N`: answers after an asynchronous wait of N ms (other requests run
//!   meanwhile in the same instance);
//! - `trap`: panics, which traps the instance;
//! - `loop`: computes forever, until the host's deadline stops it;
//! - `error?code=...`: answers with a `wasi:http` error code instead of a response
//!   (`denied`, `body-size`, `timeout`, anything else is `internal-error`);
//! - `stream?chunks=N`: N chunks of 1 KiB, each after a 1 ms wait;
//! - `hold?mb=N&ms=M`: allocates N MiB and holds it for M ms before answering (past the
//!   host's memory limit the allocation traps).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response, Trailers};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Service);

struct Service;

/// Requests this instance has taken.
static SERVED: AtomicU32 = AtomicU32::new(0);
/// A random name for this instance, drawn on its first request.
static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        if INSTANCE.load(Ordering::Relaxed) == 0 {
            INSTANCE.store(
                wasip3::random::random::get_random_u64() | 1,
                Ordering::Relaxed,
            );
        }
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let action = path.rsplit('/').next().unwrap_or_default();
        let headers = Fields::from_list(&[
            (
                "x-instance".to_string(),
                format!("{:016x}", INSTANCE.load(Ordering::Relaxed)).into_bytes(),
            ),
            ("x-served".to_string(), served.to_string().into_bytes()),
        ])
        .map_err(|_| ErrorCode::InternalError(Some("bad header".into())))?;
        match action {
            "hello" | "" => Ok(text(headers, "Hello from WASI 0.3\n")),
            "echo" => Ok(echo(request, headers)),
            "sleep" => {
                let ms: u64 = param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                Ok(text(headers, &format!("slept {ms} ms\n")))
            }
            "trap" => panic!("the guest was asked to trap"),
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "error" => Err(match param(query, "code").unwrap_or("") {
                "denied" => ErrorCode::HttpRequestDenied,
                "body-size" => ErrorCode::HttpRequestBodySize(None),
                "timeout" => ErrorCode::HttpResponseTimeout,
                _ => ErrorCode::InternalError(Some("asked to fail".into())),
            }),
            "hold" => {
                let mb: usize = param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(1);
                let ms: u64 = param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                let held = vec![1u8; mb << 20];
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                let total: usize = held.iter().map(|b| usize::from(*b)).sum();
                Ok(text(headers, &format!("held {total} bytes\n")))
            }
            "stream" => {
                let chunks: u32 = param(query, "chunks")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(8);
                Ok(stream(headers, chunks))
            }
            _ => {
                let (response, _sent) = Response::new(headers, None, trailers(None));
                response
                    .set_status_code(404)
                    .map_err(|()| ErrorCode::InternalError(None))?;
                Ok(response)
            }
        }
    }
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// A trailers future that is already resolved.
fn trailers(
    value: Option<Trailers>,
) -> wit_bindgen::FutureReader<Result<Option<Trailers>, ErrorCode>> {
    let (writer, reader) = wit_future::new(|| Ok(None));
    if value.is_some() {
        wit_bindgen::spawn_local(async move {
            let _ = writer.write(Ok(value)).await;
        });
    }
    reader
}

fn text(headers: Fields, body: &str) -> Response {
    let (mut writer, reader) = wit_stream::new();
    let (response, _sent) = Response::new(headers, Some(reader), trailers(None));
    let body = body.as_bytes().to_vec();
    wit_bindgen::spawn_local(async move {
        writer.write_all(body).await;
    });
    response
}

fn echo(request: Request, headers: Fields) -> Response {
    let (done, done_reader) = wit_future::new(|| Ok(()));
    let (mut body, request_trailers) = Request::consume_body(request, done_reader);
    let (mut writer, reader) = wit_stream::new();
    let (trailers_writer, trailers_reader) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(reader), trailers_reader);
    wit_bindgen::spawn_local(async move {
        // Each chunk goes out as soon as it came in: nothing is buffered whole.
        loop {
            let (result, chunk) = body.read(Vec::with_capacity(16 * 1024)).await;
            if !chunk.is_empty() && !writer.write_all(chunk).await.is_empty() {
                return; // the client went away
            }
            if let StreamResult::Dropped | StreamResult::Cancelled = result {
                break;
            }
        }
        drop(writer);
        let received = request_trailers.await;
        let _ = done.write(Ok(())).await;
        let _ = trailers_writer.write(received).await;
    });
    response
}

fn stream(headers: Fields, chunks: u32) -> Response {
    let (mut writer, reader) = wit_stream::new();
    let (response, _sent) = Response::new(headers, Some(reader), trailers(None));
    wit_bindgen::spawn_local(async move {
        for i in 0..chunks {
            wasip3::clocks::monotonic_clock::wait_for(1_000_000).await;
            let line = format!("{i:>1023}\n").into_bytes();
            if !writer.write_all(line).await.is_empty() {
                return;
            }
        }
    });
    response
}
