//! Outbound HTTP: requests to the hosts the function's manifest entry allows
//! (`allowed_outbound_hosts`), through the standard `wasi:http/outgoing-handler`. Another
//! function of the same host is `http://<name>.wasmfn.internal/...`.
//!
//! ```ignore
//! let rates = wasmfn_sdk::outbound::get("https://api.example.com/rates")?.json::<Rates>()?;
//! let r = wasmfn_sdk::outbound::post("http://users.wasmfn.internal/users", &body)?;
//! ```
//!
//! A refused or failed request is an [`Error`]: 500 when the manifest does not allow the
//! host, 502 when the upstream could not be reached or broke off (retryable, so an event
//! handler's `?` makes the broker redeliver). An upstream's own error status is a normal
//! [`Response`].

use crate::wit::wasi::http::outgoing_handler;
use crate::wit::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::wit::wasi::io::streams::StreamError;
use crate::{Error, Response};

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send("GET", url, &[], &[])
}

/// `POST url` with `body` as JSON.
pub fn post<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(body)
        .map_err(|e| Error::internal(format!("cannot encode the request body as JSON: {e}")))?;
    send(
        "POST",
        url,
        &[("content-type".to_string(), b"application/json".to_vec())],
        &body,
    )
}

/// Sends `method url` with `headers` and `body`, and reads the whole response.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Response, Error> {
    let target = Target::parse(url)?;
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let fields = Fields::from_list(headers)
        .map_err(|e| Error::internal(format!("invalid request header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let method = method_of!(method, Method);
    let invalid = |what: &str| Error::internal(format!("invalid request {what} in {url:?}"));
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(target.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&target.path))
        .map_err(|()| invalid("path"))?;
    // An empty body is not taken at all: the host then sends none, without the stream and
    // the hand-offs a body needs.
    let outgoing = if body.is_empty() {
        None
    } else {
        Some(
            request
                .body()
                .map_err(|()| Error::internal("the request body was already taken"))?,
        )
    };
    let pending = outgoing_handler::handle(request, None).map_err(|e| failed(url, e))?;
    if let Some(outgoing) = outgoing {
        {
            let stream = outgoing
                .write()
                .map_err(|()| Error::internal("the request body stream was already taken"))?;
            for chunk in body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|e| {
                    Error::new(502, format!("sending the body to {url} failed: {e:?}"))
                })?;
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(|e| failed(url, e))?;
    }
    pending.subscribe().block();
    let incoming = pending
        .get()
        .expect("the response is ready after block()")
        .map_err(|()| Error::internal("the response was already taken"))?
        .map_err(|e| failed(url, e))?;
    let mut response = Response::new(incoming.status());
    response.headers = incoming.headers().entries();
    let body = incoming
        .consume()
        .map_err(|()| Error::internal("the response body was already taken"))?;
    {
        let stream = body
            .stream()
            .map_err(|()| Error::internal("the response body stream was already taken"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => response.body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::new(
                        502,
                        format!(
                            "reading the response of {url} failed: {}",
                            e.to_debug_string()
                        ),
                    ));
                }
            }
        }
    }
    IncomingBody::finish(body);
    Ok(response)
}

/// Where an absolute `http(s)://` URL points; shared with the WASI 0.3 client.
pub(crate) struct Target<'a> {
    pub(crate) https: bool,
    pub(crate) authority: &'a str,
    /// The path and query, starting with `/`.
    pub(crate) path: String,
}

impl<'a> Target<'a> {
    pub(crate) fn parse(url: &'a str) -> Result<Self, Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::internal(format!("{url:?} is not an absolute http(s) URL")))?;
        let https = match scheme {
            "http" => false,
            "https" => true,
            other => {
                return Err(Error::internal(format!(
                    "scheme {other:?} is not http or https"
                )));
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Self {
            https,
            authority,
            path,
        })
    }
}

fn failed(url: &str, e: ErrorCode) -> Error {
    match e {
        ErrorCode::HttpRequestDenied => Error::internal(format!(
            "the request to {url} was denied: its host is not in this function's allowed_outbound_hosts"
        )),
        other => Error::new(502, format!("the request to {url} failed: {other:?}")),
    }
}
