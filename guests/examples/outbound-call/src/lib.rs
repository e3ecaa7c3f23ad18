//! Calls another service: `GET /call?url=<url>` sends `GET <url>` through outbound HTTP
//! and answers with the upstream's status and body (and its status in `x-upstream-status`).
//! The host allows only the function's `allowed_outbound_hosts`; a call to another function
//! of the same host is `http://<name>.wasmfn.internal/...`. A refused or failed call is the
//! SDK's error: 500 when the host is not allowed, 502 when the upstream failed.
//!
//! `&n=N` calls N times and answers the last (`n=0`: no call, 204), for the benchmarks.
use wasmfn_sdk::{Error, Request, Response, outbound};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Result<Response, Error> {
    let url = req
        .query_param("url")
        .ok_or_else(|| Error::bad_request("say where: /call?url=..."))?;
    let n: u32 = req
        .query_param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    if n == 0 {
        return Ok(Response::new(204));
    }
    for _ in 1..n {
        outbound::get(&url)?;
    }
    let upstream = outbound::get(&url)?;
    let mut response = Response::new(upstream.status())
        .with_header("x-upstream-status", upstream.status().to_string())
        .with_body(upstream.body().to_vec());
    if let Some(ct) = upstream.header("content-type") {
        response = response.with_header("content-type", ct);
    }
    Ok(response)
}
