//! A WASI 0.3 function written with `async fn` handlers. One instance serves many requests,
//! several at once; each keeps its own trace, hop count and log lines.
//!
//! It answers by the last segment of the path, so it can be routed under any prefix:
//!
//! - `hello?name=Ada`: `Hello, Ada!`, the greeting from the `greeting` variable;
//! - `echo`: the request body streamed back chunk by chunk as it arrives;
//! - `json` (POST `{"name": ...}`): a JSON greeting, or 400 for a body that is not one;
//! - `count?key=k`: adds one to `k` in the `default` key-value store;
//! - `note?key=k&text=t`: stores `t` under `k` with the async key-value calls and reads it
//!   back (without `text`, only reads it: 404 when there is none);
//! - `fetch?url=U`: GETs `U` and answers with its status and body;
//! - `emit?type=T&tag=X`: emits an event of type `T` with data `{"tag": X}`;
//! - `work?tag=X&ms=N&url=U`: prints `tag X`, emits `p3.work` with `{"tag": X}`, waits N
//!   ms (the instance serves others meanwhile), then GETs `U` and answers with its body;
//! - `.../routed/NAME`: an async route of the SDK's router, after an asynchronous wait;
//! - `trap`: panics, which traps the instance.
//!
//! Its event handler answers `p3.ping` with a `p3.pong` reply carrying the same data, and
//! emits `p3.pinged` on the way; `p3.wait` (`{"ms": N}`) after an asynchronous wait of N ms
//! with `p3.waited`, whose data says how many events this instance has had in hand at once
//! at most (`peak`); `p3.trap` panics; other events it rejects.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use wasmfn_sdk::p3::{self, StreamingRequest, StreamingResponse};
use wasmfn_sdk::{CloudEvent, Error, IntoResponse, Json, Request, Response, Router, kv, variables};

#[wasmfn_sdk::http]
async fn handle(request: StreamingRequest) -> Result<StreamingResponse, Error> {
    let path = request.head().path().to_string();
    let action = path.rsplit('/').next().unwrap_or_default();
    if action == "echo" {
        return Ok(echo(request));
    }
    let request = request.read_whole().await?;
    if path.rsplit('/').nth(1) == Some("routed") {
        let router = Router::new().get_async("/:prefix/routed/:name", async |req: Request| {
            p3::sleep(std::time::Duration::from_millis(1)).await;
            format!("routed to {}\n", req.param("name").unwrap_or_default())
        });
        return Ok(router.handle_async(request).await.into());
    }
    let response = match action {
        "hello" => hello(&request),
        "json" => json(&request)?,
        "count" => count(&request)?,
        "note" => note(&request).await?,
        "fetch" => fetch(&request).await?,
        "emit" => emit(&request).await?,
        "work" => work(&request).await?,
        "trap" => panic!("the guest was asked to trap"),
        _ => Error::not_found(format!("no such action: {action:?}")).into_response(),
    };
    Ok(response.into())
}

fn hello(request: &Request) -> Response {
    let greeting = variables::get("greeting").unwrap_or_else(|| "Hello".to_string());
    let name = request
        .query_param("name")
        .unwrap_or_else(|| "world".to_string());
    Response::text(format!("{greeting}, {name}!\n"))
}

/// The body back as it arrives: nothing is buffered whole.
fn echo(request: StreamingRequest) -> StreamingResponse {
    let (head, mut body) = request.into_parts();
    let content_type = head
        .header("content-type")
        .unwrap_or("application/octet-stream");
    let (response, mut out) = StreamingResponse::new(200);
    p3::spawn(async move {
        while let Some(chunk) = body.chunk().await {
            if out.write(chunk).await.is_err() {
                return;
            }
        }
    });
    response.with_header("content-type", content_type)
}

#[derive(Deserialize)]
struct Greet {
    name: String,
}

fn json(request: &Request) -> Result<Response, Error> {
    let greet: Greet = request.json()?;
    Ok(Json(serde_json::json!({ "greeting": format!("Hello, {}!", greet.name) })).into_response())
}

fn count(request: &Request) -> Result<Response, Error> {
    let key = request.query_param("key").unwrap_or_else(|| "hits".into());
    let count = kv::Store::open("default")?.increment(&key, 1)?;
    Ok(Response::text(format!("{count}\n")))
}

async fn note(request: &Request) -> Result<Response, Error> {
    let key = request.query_param("key").unwrap_or_else(|| "note".into());
    let store = p3::kv::Store::open("default").await?;
    if let Some(text) = request.query_param("text") {
        store.set(&key, text.as_bytes()).await?;
    }
    match store.get(&key).await? {
        Some(text) => Ok(Response::new(200).with_body(text)),
        None => Err(Error::not_found(format!("no note {key:?}"))),
    }
}

async fn fetch(request: &Request) -> Result<Response, Error> {
    let url = request
        .query_param("url")
        .ok_or_else(|| Error::bad_request("missing url"))?;
    let upstream = p3::outbound::get(&url).await?;
    Ok(Response::new(upstream.status())
        .with_header("x-upstream-status", upstream.status().to_string())
        .with_body(upstream.body().to_vec()))
}

async fn emit(request: &Request) -> Result<Response, Error> {
    let ty = request
        .query_param("type")
        .unwrap_or_else(|| "p3.emitted".into());
    let tag = request.query_param("tag").unwrap_or_default();
    p3::emit(CloudEvent::new(&ty, "/hello-p3").with_json(&serde_json::json!({ "tag": tag }))?)
        .await?;
    Ok(Response::new(202))
}

async fn work(request: &Request) -> Result<Response, Error> {
    let tag = request.query_param("tag").unwrap_or_default();
    let ms: u64 = request
        .query_param("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!("tag {tag}");
    p3::emit(
        CloudEvent::new("p3.work", "/hello-p3").with_json(&serde_json::json!({ "tag": tag }))?,
    )
    .await?;
    p3::sleep(std::time::Duration::from_millis(ms)).await;
    let url = request
        .query_param("url")
        .ok_or_else(|| Error::bad_request("missing url"))?;
    let upstream = p3::outbound::get(&url).await?;
    Ok(Response::new(upstream.status()).with_body(upstream.body().to_vec()))
}

/// Events this instance is handling now, and the most it has handled at once.
static IN_HAND: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

#[wasmfn_sdk::event]
async fn on_event(event: CloudEvent) -> Result<Option<CloudEvent>, Error> {
    match event.ty() {
        "p3.ping" => {}
        "p3.wait" => {
            let now = IN_HAND.fetch_add(1, Ordering::Relaxed) + 1;
            PEAK.fetch_max(now, Ordering::Relaxed);
            let ms = event.json::<serde_json::Value>()?["ms"]
                .as_u64()
                .unwrap_or(0);
            p3::sleep(std::time::Duration::from_millis(ms)).await;
            IN_HAND.fetch_sub(1, Ordering::Relaxed);
            let peak = PEAK.load(Ordering::Relaxed);
            let reply = CloudEvent::new("p3.waited", "/hello-p3");
            return Ok(Some(reply.with_json(&serde_json::json!({ "peak": peak }))?));
        }
        "p3.trap" => panic!("the guest was asked to trap"),
        other => return Err(Error::reject(format!("unexpected event type {other:?}"))),
    }
    let data = event.data().unwrap_or_default().to_vec();
    p3::emit(CloudEvent::new("p3.pinged", "/hello-p3").with_data("application/json", data.clone()))
        .await?;
    Ok(Some(
        CloudEvent::new("p3.pong", "/hello-p3").with_data("application/json", data),
    ))
}
