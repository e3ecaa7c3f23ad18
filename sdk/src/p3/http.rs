//! Glue between `wasi:http/handler@0.3` and the SDK's request and response, and the
//! streaming request and response bodies.

use wasip3::http::types::{
    ErrorCode, Fields, Method, Request as WasiRequest, Response as WasiResponse, Trailers,
};
use wasip3::wit_bindgen::{FutureReader, FutureWriter, StreamReader, StreamResult, StreamWriter};
use wasip3::{wit_future, wit_stream};

use crate::{Error, IntoResponse, Request, Response};

/// Reads the request as the handler takes it ([`Request`], read whole, or
/// [`StreamingRequest`]), runs the handler, and returns its response; a body is written as
/// the host reads it.
pub async fn serve<F, T, Fut>(request: WasiRequest, handler: F) -> Result<WasiResponse, ErrorCode>
where
    F: FnOnce(T) -> Fut,
    T: FromWasiRequest,
    Fut: Future<Output: IntoWasiResponse>,
{
    Ok(match T::from_wasi(request).await {
        Ok(request) => handler(request).await.into_wasi_response(),
        Err(e) => Error::bad_request(e).into_response().into_wasi_response(),
    })
}

/// What an async HTTP handler may take: a [`Request`] whose body has been read whole, or a
/// [`StreamingRequest`] whose body it reads as it arrives.
pub trait FromWasiRequest: Sized {
    #[doc(hidden)]
    fn from_wasi(request: WasiRequest) -> impl Future<Output = Result<Self, String>>;
}

impl FromWasiRequest for Request {
    async fn from_wasi(request: WasiRequest) -> Result<Self, String> {
        let streaming = StreamingRequest::from_wasi(request).await?;
        streaming
            .read_whole()
            .await
            .map_err(|e| e.message().to_string())
    }
}

/// A request whose body is read as it arrives: its head is a [`Request`] with an empty
/// body, and [`Body::chunk`] reads the rest.
pub struct StreamingRequest {
    head: Request,
    body: Body,
}

impl StreamingRequest {
    /// The method, path, query and headers.
    pub fn head(&self) -> &Request {
        &self.head
    }

    /// Whether the head says there is no body: `content-length: 0`, or a GET or HEAD with
    /// neither a length nor a transfer coding (which in HTTP/1.1 has none).
    fn declares_no_body(&self) -> bool {
        match self.head.header("content-length") {
            Some(length) => length.trim() == "0",
            None => {
                matches!(self.head.method(), "GET" | "HEAD")
                    && self.head.header("transfer-encoding").is_none()
            }
        }
    }

    /// The head and the body, apart.
    pub fn into_parts(self) -> (Request, Body) {
        (self.head, self.body)
    }

    /// Reads the rest of the body: the request as a handler taking a [`Request`] gets it.
    /// A body that broke off is a 400.
    pub async fn read_whole(self) -> Result<Request, Error> {
        if self.declares_no_body() {
            // Reading an empty body still costs a stream read and the trailers' future
            // (~29k instructions a request, benches/README.md).
            return Ok(self.head);
        }
        let (mut request, mut body) = self.into_parts();
        while let Some(chunk) = body.chunk().await {
            request.body.extend_from_slice(&chunk);
        }
        // The body is whole only if the request ended well.
        body.finish().await.map_err(Error::bad_request)?;
        Ok(request)
    }
}

impl FromWasiRequest for StreamingRequest {
    async fn from_wasi(incoming: WasiRequest) -> Result<Self, String> {
        let method = method_name!(incoming.get_method(), Method);
        let path_and_query = incoming
            .get_path_with_query()
            .unwrap_or_else(|| "/".to_string());
        let mut head = Request::new(&method, &path_and_query);
        head.headers = incoming.get_headers().copy_all();
        let (done, done_reader) = wit_future::new(|| Ok(()));
        let (stream, trailers) = WasiRequest::consume_body(incoming, done_reader);
        Ok(Self {
            head,
            body: Body {
                stream: Some(stream),
                trailers: Some(trailers),
                _done: done,
            },
        })
    }
}

/// A request body, read as it arrives.
pub struct Body {
    stream: Option<StreamReader<u8>>,
    trailers: Option<FutureReader<Result<Option<Trailers>, ErrorCode>>>,
    /// Dropped when the body is: tells the host the handler is done with it.
    _done: FutureWriter<Result<(), ErrorCode>>,
}

impl Body {
    /// The next chunk, as soon as some of it has arrived; None at the end.
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        let stream = self.stream.as_mut()?;
        loop {
            let (result, chunk) = stream.read(Vec::with_capacity(64 * 1024)).await;
            if !chunk.is_empty() {
                return Some(chunk);
            }
            if let StreamResult::Dropped | StreamResult::Cancelled = result {
                self.stream = None;
                return None;
            }
        }
    }

    /// Waits for the end of the request: an error if it broke off before its end.
    pub async fn finish(mut self) -> Result<(), String> {
        self.stream = None;
        match self.trailers.take() {
            Some(trailers) => match trailers.await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("reading the request body failed: {e:?}")),
            },
            None => Ok(()),
        }
    }
}

/// What an async HTTP handler may return: anything that implements [`IntoResponse`], or a
/// [`StreamingResponse`].
pub trait IntoWasiResponse {
    #[doc(hidden)]
    fn into_wasi_response(self) -> WasiResponse;
}

impl<T: IntoResponse> IntoWasiResponse for T {
    fn into_wasi_response(self) -> WasiResponse {
        write_response(self.into_response())
    }
}

/// A response whose body is written after it is returned, through the [`BodyWriter`]
/// [`StreamingResponse::new`] gives (from a task started with [`crate::p3::spawn`]). The
/// body ends when the writer is dropped.
pub struct StreamingResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: StreamReader<u8>,
}

impl StreamingResponse {
    /// A response with `status`, and the writer of its body.
    pub fn new(status: u16) -> (Self, BodyWriter) {
        let (writer, body) = wit_stream::new();
        let response = Self {
            status,
            headers: Vec::new(),
            body,
        };
        (response, BodyWriter(writer))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// A whole response, its body written as the host reads it: for a handler that streams some
/// responses and not others.
impl From<Response> for StreamingResponse {
    fn from(response: Response) -> Self {
        let (status, headers, body) = response.into_sent();
        let (mut streaming, mut writer) = StreamingResponse::new(status);
        streaming.headers = headers;
        wasip3::spawn_local(async move {
            let _ = writer.write(body).await;
        });
        streaming
    }
}

impl IntoWasiResponse for Result<StreamingResponse, Error> {
    fn into_wasi_response(self) -> WasiResponse {
        match self {
            Ok(response) => response.into_wasi_response(),
            Err(e) => e.into_response().into_wasi_response(),
        }
    }
}

impl IntoWasiResponse for StreamingResponse {
    fn into_wasi_response(self) -> WasiResponse {
        match Fields::from_list(&self.headers) {
            Ok(fields) => {
                let (response, _sent) = WasiResponse::new(fields, Some(self.body), no_trailers());
                set_status(&response, self.status);
                response
            }
            Err(e) => invalid_header(e),
        }
    }
}

/// Writes a [`StreamingResponse`]'s body.
pub struct BodyWriter(StreamWriter<u8>);

impl BodyWriter {
    /// Sends `bytes` once the client has room for them; an error once the client has gone.
    pub async fn write(&mut self, bytes: impl Into<Vec<u8>>) -> Result<(), Error> {
        let rest = self.0.write_all(bytes.into()).await;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(Error::new(499, "the client stopped reading the response"))
        }
    }
}

fn write_response(response: Response) -> WasiResponse {
    let (status, headers, body) = response.into_sent();
    match Fields::from_list(&headers) {
        Ok(fields) => send(fields, status, body),
        Err(e) => invalid_header(e),
    }
}

/// A header the host refuses (forbidden or malformed) is a bug in the handler: answer 500
/// and say which rule was broken rather than dropping the response.
fn invalid_header(e: impl std::fmt::Debug) -> WasiResponse {
    let message = format!("handler returned an invalid header: {e:?}").into_bytes();
    let fields = Fields::from_list(&[(
        "content-length".to_string(),
        message.len().to_string().into_bytes(),
    )])
    .expect("static header is valid");
    send(fields, 500, message)
}

/// A trailers future that resolves to none.
fn no_trailers() -> FutureReader<Result<Option<Trailers>, ErrorCode>> {
    let (writer, trailers) = wit_future::new(|| Ok(None));
    drop(writer);
    trailers
}

fn send(fields: Fields, status: u16, body: Vec<u8>) -> WasiResponse {
    let trailers = no_trailers();
    if body.is_empty() {
        let (response, _sent) = WasiResponse::new(fields, None, trailers);
        set_status(&response, status);
        return response;
    }
    let (mut writer, reader) = wit_stream::new();
    let (response, _sent) = WasiResponse::new(fields, Some(reader), trailers);
    set_status(&response, status);
    // Written once the host reads it, after the response is returned.
    wasip3::spawn_local(async move {
        writer.write_all(body).await;
    });
    response
}

fn set_status(response: &WasiResponse, status: u16) {
    // Status codes outside 100..=599 are refused by the host; fall back to 500.
    if response.set_status_code(status).is_err() {
        let _ = response.set_status_code(500);
    }
}
