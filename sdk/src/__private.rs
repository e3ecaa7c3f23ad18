//! Glue between the `wasi:http` bindings and the SDK's types; used by `#[wasmfn_sdk::http]`.

use crate::wit::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::wit::wasi::io::streams::StreamError;
use crate::{IntoResponse, Request, Response};

/// Runs an event handler on one event; used by `#[wasmfn_sdk::event]`.
pub fn handle_event<F, R>(
    event: crate::wit::wasmfn::function::types::CloudEvent,
    handler: F,
) -> Result<
    Option<crate::wit::wasmfn::function::types::CloudEvent>,
    crate::wit::wasmfn::function::types::HandlerError,
>
where
    F: FnOnce(crate::CloudEvent) -> R,
    R: crate::IntoEventResult,
{
    crate::event::into_handler_result(handler(event.into()).into_event_result())
}

/// Runs the handler on a request wasmfn handed over whole (`wasmfn:function/http-handler`),
/// and returns the whole response. wasmfn sets `content-length` itself.
pub fn serve_whole<F, R>(
    whole: crate::wit::exports::wasmfn::function::http_handler::Request,
    handler: F,
) -> crate::wit::exports::wasmfn::function::http_handler::Response
where
    F: FnOnce(Request) -> R,
    R: IntoResponse,
{
    let mut request = Request::new(&whole.method, &whole.path_with_query);
    request.headers = whole.headers;
    request.body = whole.body;
    let response = handler(request).into_response();
    crate::wit::exports::wasmfn::function::http_handler::Response {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

/// Reads the request, runs the handler, writes the response.
pub fn serve<F, R>(incoming: IncomingRequest, out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request) -> R,
    R: IntoResponse,
{
    let request = match read_request(incoming) {
        Ok(r) => r,
        Err(e) => return write_response(out, crate::Error::bad_request(e).into_response()),
    };
    write_response(out, handler(request).into_response());
}

fn read_request(incoming: IncomingRequest) -> Result<Request, String> {
    let method = method_name!(incoming.method(), Method);
    let path_and_query = incoming
        .path_with_query()
        .unwrap_or_else(|| "/".to_string());
    let mut request = Request::new(&method, &path_and_query);
    request.headers = incoming.headers().entries();

    let body = incoming
        .consume()
        .map_err(|()| "request body was already taken".to_string())?;
    {
        let stream = body
            .stream()
            .map_err(|()| "request body stream was already taken".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => request.body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!(
                        "reading the request body failed: {}",
                        e.to_debug_string()
                    ));
                }
            }
        }
    }
    drop(body);
    Ok(request)
}

fn write_response(out: ResponseOutparam, response: Response) {
    let (status, headers, body) = response.into_sent();
    let fields = match Fields::from_list(&headers) {
        Ok(f) => f,
        Err(e) => {
            // A header the host refuses (forbidden or malformed) is a bug in the handler;
            // answer 500 and say which rule was broken rather than dropping the response.
            let msg = format!("handler returned an invalid header: {e:?}");
            let fields = Fields::from_list(&[(
                "content-length".to_string(),
                msg.len().to_string().into_bytes(),
            )])
            .expect("static header is valid");
            return send(out, fields, 500, msg.as_bytes());
        }
    };
    send(out, fields, status, &body);
}

fn send(out: ResponseOutparam, fields: Fields, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(fields);
    // Status codes outside 100..=599 are refused by the host; fall back to 500.
    if response.set_status_code(status).is_err() {
        let _ = response.set_status_code(500);
    }
    let Ok(outgoing_body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    {
        let Ok(stream) = outgoing_body.write() else {
            return;
        };
        let mut rest = body;
        while !rest.is_empty() {
            let permitted = match stream.check_write() {
                Ok(0) => {
                    stream.subscribe().block();
                    continue;
                }
                Ok(n) => n as usize,
                // The client went away; nothing more to do.
                Err(_) => return,
            };
            let n = permitted.min(rest.len());
            if stream.write(&rest[..n]).is_err() {
                return;
            }
            rest = &rest[n..];
        }
        if stream.blocking_flush().is_err() {
            return;
        }
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}
