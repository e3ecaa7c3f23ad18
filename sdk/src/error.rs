use crate::response::{IntoResponse, Response};

/// An error a handler returns: an HTTP status and a message, sent as `{"error": message}`.
///
/// Returning `Result<T, Error>` from a handler lets `?` turn bad input into a 4xx.
///
/// From an event handler, the status decides what the broker does, by Knative's delivery
/// rules: 404, 408, 409, 429 and 5xx ask for a retry (the host answers 503), every other
/// status rejects the event for good (the host answers 422 and the broker dead-letters it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: u16,
    message: String,
    retry_after: Option<u32>,
}

impl Error {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// 422 Unprocessable Content: from an event handler, rejects the event for good.
    pub fn reject(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }

    /// 503 Service Unavailable: from an event handler, asks the broker to deliver it again.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }

    /// Asks the sender to wait this many seconds before retrying (`Retry-After`).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Whether a broker should deliver the event again (Knative's retry rules).
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 404 | 408 | 409 | 429) || self.status >= 500
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let response = Response::json(self.status, &body);
        match self.retry_after {
            Some(seconds) => response.with_header("retry-after", seconds.to_string()),
            None => response,
        }
    }
}

impl Error {
    pub(crate) fn retry_after_seconds(&self) -> Option<u32> {
        self.retry_after
    }
}
