//! Outbound HTTP from a WASI 0.3 handler, through the standard `wasi:http/client@0.3`: the
//! same rules as [`crate::outbound`] (the function's `allowed_outbound_hosts`; another
//! function of the host is `http://<name>.wasmfn.internal/...`), and while a request is on
//! its way the instance serves others.
//!
//! ```ignore
//! let rates = wasmfn_sdk::p3::outbound::get("https://api.example.com/rates").await?;
//! let r = wasmfn_sdk::p3::outbound::post("http://users.wasmfn.internal/users", &body).await?;
//! ```
//!
//! A refused or failed request is an [`Error`]: 500 when the manifest does not allow the
//! host, 502 when the upstream could not be reached or broke off (retryable). An
//! upstream's own error status is a normal [`Response`].

use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response as WasiResponse, Scheme};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

use crate::outbound::Target;
use crate::{Error, Response};

/// `GET url`.
pub async fn get(url: &str) -> Result<Response, Error> {
    send("GET", url, &[], Vec::new()).await
}

/// `POST url` with `body` as JSON.
pub async fn post<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(body)
        .map_err(|e| Error::internal(format!("cannot encode the request body as JSON: {e}")))?;
    let json = [("content-type".to_string(), b"application/json".to_vec())];
    send("POST", url, &json, body).await
}

/// Sends `method url` with `headers` and `body`, and reads the whole response.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: Vec<u8>,
) -> Result<Response, Error> {
    let target = Target::parse(url)?;
    let fields = Fields::from_list(headers)
        .map_err(|e| Error::internal(format!("invalid request header: {e:?}")))?;
    let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
    drop(trailers_writer);
    let (contents, writer) = if body.is_empty() {
        (None, None)
    } else {
        let (writer, reader) = wit_stream::new();
        (Some(reader), Some(writer))
    };
    let (request, _sent) = Request::new(fields, contents, trailers, None);
    let invalid = |what: &str| Error::internal(format!("invalid request {what} in {url:?}"));
    request
        .set_method(&method_of!(method, Method))
        .map_err(|()| invalid("method"))?;
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(target.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&target.path))
        .map_err(|()| invalid("path"))?;
    if let Some(mut writer) = writer {
        // Written as the host sends it, while the response is awaited.
        wasip3::spawn_local(async move {
            writer.write_all(body).await;
        });
    }
    let incoming = client::send(request).await.map_err(|e| failed(url, e))?;
    read_response(incoming, url).await
}

async fn read_response(incoming: WasiResponse, url: &str) -> Result<Response, Error> {
    let mut response = Response::new(incoming.get_status_code());
    response.headers = incoming.get_headers().copy_all();
    let (done, done_reader) = wit_future::new(|| Ok(()));
    let (mut body, trailers) = WasiResponse::consume_body(incoming, done_reader);
    loop {
        let (result, chunk) = body.read(Vec::with_capacity(64 * 1024)).await;
        response.body.extend_from_slice(&chunk);
        match result {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    drop(body);
    let ended = trailers.await;
    drop(done);
    match ended {
        Ok(_) => Ok(response),
        Err(e) => Err(Error::new(
            502,
            format!("reading the response of {url} failed: {e:?}"),
        )),
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
