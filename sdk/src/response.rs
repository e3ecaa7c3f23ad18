use serde::Serialize;

use crate::Error;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// Header names and raw values, in order.
pub(crate) type Headers = Vec<(String, Vec<u8>)>;

impl Response {
    /// Its status, headers and body as sent: whatever `content-length` the handler set is
    /// replaced by the body's own length, which the host checks against the body.
    pub(crate) fn into_sent(self) -> (u16, Headers, Vec<u8>) {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .into_iter()
            .filter(|(k, _)| k != "content-length")
            .collect();
        headers.push((
            "content-length".to_string(),
            self.body.len().to_string().into_bytes(),
        ));
        (self.status, headers, self.body)
    }

    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// A JSON body with this status. Serializing plain data cannot fail; if a custom
    /// `Serialize` impl does, the response is a 500 that says so.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => Self::new(500)
                .with_header("content-type", "text/plain; charset=utf-8")
                .with_body(format!("response did not serialize as JSON: {e}")),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text (of a response from [`crate::outbound`]); not text is a 502.
    pub fn body_text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::new(502, format!("the response body is not UTF-8: {e}")))
    }

    /// The body as JSON of type `T` (of a response from [`crate::outbound`]); anything
    /// else is a 502.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                502,
                format!("the response body is not the expected JSON: {e}"),
            )
        })
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into the response sent to the client.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl<R: IntoResponse> IntoResponse for (u16, R) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.status = self.0;
        response
    }
}

impl<R: IntoResponse> IntoResponse for Result<R, Error> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// A value sent as a 200 JSON response.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(200, &self.0)
    }
}
