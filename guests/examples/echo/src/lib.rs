//! Sends the request back: the body unchanged (with its content type), and the method,
//! path, query and every request header as `x-echo-*` response headers.
use wasmfn_sdk::{Request, Response};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    let mut response = Response::new(200)
        .with_header("x-echo-method", req.method())
        .with_header("x-echo-path", req.path());
    if let Some(query) = req.query() {
        response = response.with_header("x-echo-query", query);
    }
    if let Some(ct) = req.header("content-type") {
        response = response.with_header("content-type", ct);
    }
    for (name, value) in req.headers() {
        response = response.with_header(&format!("x-echo-header-{name}"), value);
    }
    response.with_body(req.into_body())
}
