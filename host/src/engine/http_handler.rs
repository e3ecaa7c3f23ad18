//! The `wasmfn:function/http-handler` ABI (wit/world.wit), the one-call HTTP path: for a
//! function that exports it (every SDK function does) and a request whose body has a known,
//! small length, the host reads the body, hands the whole request over in one call and gets
//! the whole response back. No `wasi:http` resources, streams, response outparam or separate
//! guest task, which is most of what a small request costs after instantiation
//! (benches/README.md).

use bytes::Bytes;
use http::header;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use super::invocation::Invocation;
use super::state::State;
use super::{BoxError, HttpCall, HttpExecutor, InvokeError, RequestBody, Responded, ResponseBody};
use wasmtime::Store;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit/host.wit"],
        world: "wasmfn:host/http-handling",
        exports: { default: async },
    });
}

pub(crate) use bindings::HttpHandlingIndices as HttpHandlerIndices;
use bindings::exports::wasmfn::function::http_handler::{Request, Response};

/// Bodies up to this size, with a known length, take the one-call path; larger or
/// streamed ones go through `wasi:http`, which streams them.
pub(crate) const MAX_BODY: u64 = 1 << 20;

/// Whether `request` may take the one-call path: its body's length is known and small.
pub(crate) fn fits<B: hyper::body::Body>(request: &hyper::Request<B>) -> bool {
    hyper::body::Body::size_hint(request.body())
        .exact()
        .is_some_and(|n| n <= MAX_BODY)
}

impl HttpExecutor for HttpHandlerIndices {
    /// For a request that [`fits`]: read the body, call once, send the whole response.
    async fn execute<B: RequestBody>(&self, call: HttpCall<'_, B>) -> Responded {
        // Boxed here, before any await: a body type carrying the caller's closures in the
        // future trips rustc's check that the future is Send.
        let request: hyper::Request<UnsyncBoxBody<Bytes, BoxError>> = call
            .request
            .map(|body| body.map_err(Into::into).boxed_unsync());
        let exports = self;
        let invocation = Invocation::begin(call.function, call.request_id, call.emit).await?;
        // Reading the body counts against the deadline, as it does when the guest reads it.
        let handle = async |instance: bindings::HttpHandling, store: &mut Store<State>| {
            let request = match read_request(request).await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let handler = instance.wasmfn_function_http_handler();
            handler.call_handle(store, &request).await.map(Ok)
        };
        into_response(invocation.run(exports, handle).await??)
    }
}

/// Reads a request whose body is at most [`MAX_BODY`] into the guest's record.
async fn read_request(
    request: hyper::Request<UnsyncBoxBody<Bytes, BoxError>>,
) -> Result<Request, InvokeError> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| InvokeError::BadRequest(format!("reading the request body failed: {e}")))?
        .to_bytes();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        body: body.into(),
    })
}

/// The guest's record as a response, or why it is not a valid one. `content-length` is
/// the body's (hyper sets it); one the function gave is dropped.
fn into_response(r: Response) -> Result<hyper::Response<ResponseBody>, InvokeError> {
    let invalid = |what: String| {
        InvokeError::NoResponse(format!("the function's response is invalid: {what}"))
    };
    if !(100..=599).contains(&r.status) {
        return Err(invalid(format!("status {} is not in 100..=599", r.status)));
    }
    let mut response = hyper::Response::builder().status(r.status);
    let headers = response.headers_mut().expect("the status was valid");
    for (name, value) in r.headers {
        let name = header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?}")))?;
        // The connection-level headers wasi:http refuses too, so a function fails alike
        // on both paths.
        if wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(&name) {
            return Err(invalid(format!("header `{name}` is not allowed")));
        }
        if name == header::CONTENT_LENGTH {
            continue;
        }
        let value = header::HeaderValue::from_bytes(&value)
            .map_err(|_| invalid(format!("the value of header {name}")))?;
        headers.append(name, value);
    }
    Ok(response
        .body(
            Full::new(Bytes::from(r.body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("status and headers were checked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_record_becomes_the_response_with_the_bodys_length() {
        let r = into_response(Response {
            status: 201,
            headers: vec![
                ("content-type".into(), b"text/plain".to_vec()),
                ("x-a".into(), b"1".to_vec()),
                ("x-a".into(), b"2".to_vec()),
                ("content-length".into(), b"999".to_vec()),
            ],
            body: b"hi".to_vec(),
        })
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers().get_all("x-a").iter().count(), 2);
        assert!(r.headers().get("content-length").is_none());
    }

    #[test]
    fn an_invalid_record_is_refused_with_the_reason() {
        for (status, name, expected) in [
            (42, "x-ok", "status 42"),
            (200, "bad header", "header name"),
            (200, "connection", "`connection` is not allowed"),
            (200, "transfer-encoding", "not allowed"),
        ] {
            let e = into_response(Response {
                status,
                headers: vec![(name.into(), b"v".to_vec())],
                body: Vec::new(),
            })
            .unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
        }
    }
}
