//! A component written against the WASI WIT files directly, with wit-bindgen and no
//! wasmfn-sdk, that uses all three capabilities: proof that a guest written for another
//! host that offers the standard interfaces (Spin, wasmCloud) runs here unchanged.
//!
//! - `GET /raw-caps/config/{name}` → the value of config variable `name`, or 404;
//! - `POST /raw-caps/kv/{store}/{op}` with the key as the body (any bytes the test wants,
//!   an empty or a 1 MiB key too): `op` is `get`, `set` (value: the `value` query
//!   parameter, or `size` bytes), `increment` or `open`; the answer says what the store
//!   said, `error: ...` included, always with status 200;
//! - `GET /raw-caps/fetch?url=...` → the upstream's status and body, or `error: <code>`.
use std::fmt::Write as _;

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:raw-capabilities;
        world raw-capabilities {
            include wasi:http/proxy@0.2.12;
            include wasi:keyvalue/imports@0.2.0-draft;
            import wasi:config/store@0.2.0-rc.1;
        }
    ",
    world: "test:raw-capabilities/raw-capabilities",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasi::keyvalue::{atomics, store};

struct Component;

export!(Component);

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = read(&request);
        let (status, text) = route(&path, body);
        respond(out, status, text.as_bytes());
    }
}

fn route(path_and_query: &str, body: Vec<u8>) -> (u16, String) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["raw-caps", "config", name] => match wasi::config::store::get(name) {
            Ok(Some(value)) => (200, value),
            Ok(None) => (404, format!("no variable {name}")),
            Err(e) => (500, format!("config error: {e:?}")),
        },
        ["raw-caps", "kv", label, op] => (200, kv(label, op, body, param("value"), param("size"))),
        ["raw-caps", "fetch"] => match param("url") {
            Some(url) => fetch(&url),
            None => (400, "fetch needs ?url=".to_string()),
        },
        _ => (404, format!("nothing at {path}")),
    }
}

fn kv(label: &str, op: &str, key: Vec<u8>, value: Option<String>, size: Option<String>) -> String {
    let bucket = match store::open(label) {
        Ok(b) => b,
        Err(e) => return format!("error: {e:?}"),
    };
    // Keys are WIT strings: the bytes the test sent, as text.
    let key = String::from_utf8_lossy(&key).into_owned();
    let value = match size.and_then(|s| s.parse::<usize>().ok()) {
        Some(n) => vec![b'v'; n],
        None => value.unwrap_or_default().into_bytes(),
    };
    let result = match op {
        "open" => Ok("opened".to_string()),
        "get" => bucket.get(&key).map(|v| match v {
            Some(v) => format!("value: {}", String::from_utf8_lossy(&v)),
            None => "none".to_string(),
        }),
        "set" => bucket.set(&key, &value).map(|()| "ok".to_string()),
        "increment" => atomics::increment(&bucket, &key, 1).map(|n| n.to_string()),
        other => return format!("error: unknown op {other}"),
    };
    result.unwrap_or_else(|e| format!("error: {e:?}"))
}

fn fetch(url: &str) -> (u16, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    }));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let pending = match wasi::http::outgoing_handler::handle(request, None) {
        Ok(p) => p,
        Err(e) => return (200, format!("error: {e:?}")),
    };
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return (200, format!("error: {e:?}")),
        _ => return (500, "the response was not ready".to_string()),
    };
    let status = response.status();
    let mut text = String::new();
    if let Ok(body) = response.consume()
        && let Ok(stream) = body.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let mut out = format!("upstream {status}: ");
    let _ = write!(out, "{text}");
    (200, out)
}

fn read(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("a valid header");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("the body is ours");
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
