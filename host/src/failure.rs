//! What a client sees when it does not get a function's own answer. Every refusal and
//! failure, of a request or of an event, is one variant of [`Failure`], which knows its
//! status, the message the client may read, and its headers; its `Display` is the whole
//! story, for the log line under the request id. docs/clients.md
//! has one row per variant.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::admission::RETRY_AFTER;
use crate::engine::{InvokeError, ResponseBody};

/// A request or event the host answers itself, with an error.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No function is routed at the path (404).
    #[error("no function is routed at {path}")]
    NoRoute {
        /// The request's path.
        path: String,
    },
    /// A limit stayed full for the whole queue timeout: the host's in-flight requests, the
    /// function's concurrency or the instance pool (503 with `Retry-After`).
    #[error("overloaded: {reason}")]
    Overloaded {
        /// Which limit, and its size.
        reason: String,
    },
    /// A new connection past `max_connections` (503 with `Retry-After`; the connection is
    /// closed).
    #[error("the host is at its connection limit")]
    ConnectionLimit,
    /// The body is larger than the function accepts, or than a CloudEvents request may be
    /// (413). Its rest is not read, so the connection is closed.
    #[error("{}", body_too_large(function.as_deref(), *limit))]
    BodyTooLarge {
        /// The function whose `max_body` it exceeds; none for a CloudEvents request.
        function: Option<String>,
        /// The limit in bytes.
        limit: u64,
    },
    /// The request could not be read or handed to the guest (400).
    #[error("bad request: {reason}")]
    BadRequest {
        /// Why.
        reason: String,
    },
    /// A function could not be loaded on its first request (500).
    #[error("function `{function}` could not be loaded: {reason}")]
    Unloadable {
        /// The function.
        function: String,
        /// Why, for the log.
        reason: String,
    },
    /// The guest trapped: a panic, `unreachable`, out of memory (500).
    #[error("function `{function}` trapped: {reason}")]
    Trap {
        /// The function.
        function: String,
        /// The trap, for the log.
        reason: String,
        /// The guest's stack, for the log.
        backtrace: String,
    },
    /// The guest ran past its `timeout` (504).
    #[error("function `{function}` ran past its {timeout:?} deadline")]
    Deadline {
        /// The function.
        function: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// The guest returned without a valid response (500).
    #[error("function `{function}` sent no response: {reason}")]
    NoResponse {
        /// The function.
        function: String,
        /// Why, for the log.
        reason: String,
    },
    /// The guest answered with a `wasi:http` error code instead of a response: 502 or 504
    /// for the failures of a call it made upstream, 4xx for what it found wrong with the
    /// request, 500 otherwise (docs/clients.md lists them).
    #[error("function `{function}` answered with the error code {code} instead of a response")]
    ErrorCode {
        /// The function.
        function: String,
        /// The code, as wasi:http names it.
        code: String,
        /// The status it maps to.
        status: u16,
    },
    /// Something in the host failed: a bug, not the guest's fault (500).
    #[error("host error: {reason}")]
    Host {
        /// Why, for the log.
        reason: String,
    },
    /// A CloudEvent that breaks the HTTP binding or the spec (400).
    #[error("malformed CloudEvent: {reason}")]
    MalformedEvent {
        /// What is wrong.
        reason: String,
    },
    /// A structured event in a format other than JSON (415).
    #[error("malformed CloudEvent: {reason}")]
    UnsupportedEventFormat {
        /// Which format.
        reason: String,
    },
    /// No function subscribes to the event (404: the broker retries, then dead-letters).
    #[error("no function subscribes to events of type {ty:?} from source {event_source:?}")]
    NoSubscriber {
        /// The event's type.
        ty: String,
        /// The event's source.
        event_source: String,
    },
    /// The handler asked for a retry (503, with `Retry-After` if it gave one).
    #[error("function `{function}` asked for a retry: {message}")]
    RetryRequested {
        /// The function.
        function: String,
        /// The handler's reason.
        message: String,
        /// How long the sender should wait.
        after: Option<Duration>,
    },
    /// The handler rejected the event for good (422: the broker dead-letters it).
    #[error("function `{function}` rejected the event: {message}")]
    Rejected {
        /// The function.
        function: String,
        /// The handler's reason.
        message: String,
    },
    /// The handler replied with an event that breaks the spec (500).
    #[error("function `{function}` replied with an invalid event: {reason}")]
    InvalidReply {
        /// The function.
        function: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The handler's reply, or an accepted event's reply in a rejected batch, could not be
    /// sent on (503: the broker redelivers).
    #[error("function `{function}` replied, but the reply could not be emitted: {reason}")]
    ReplyNotEmitted {
        /// The function, or `(batch)`.
        function: String,
        /// Why.
        reason: String,
    },
}

fn body_too_large(function: Option<&str>, limit: u64) -> String {
    match function {
        Some(f) => format!(
            "the request body is larger than function `{f}` accepts ({limit} bytes, its max_body)"
        ),
        None => format!("a CloudEvents request body may be at most {limit} bytes"),
    }
}

/// Marks a response sent without reading its request's body: the listener must drain
/// what the client still sends before closing, or the close resets the connection and
/// can destroy the response (a lingering close).
#[derive(Debug, Clone, Copy)]
pub struct UnreadBody;

/// The JSON body of every error response.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    /// What went wrong, as the client may read it.
    pub error: String,
    /// The function concerned, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<&'a str>,
    /// The path, when no function is routed there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// The event concerned, on the events path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    /// The request's id; the log line with it says why.
    pub request_id: &'a str,
}

impl Failure {
    /// The failure of an invocation of `function`.
    pub fn invoke(function: &str, error: InvokeError) -> Self {
        let function = function.to_string();
        match error {
            InvokeError::Trap { reason, backtrace } => Failure::Trap {
                function,
                reason,
                backtrace,
            },
            InvokeError::Deadline(timeout) => Failure::Deadline { function, timeout },
            InvokeError::NoResponse(reason) => Failure::NoResponse { function, reason },
            InvokeError::ErrorCode { code, status } => Failure::ErrorCode {
                function,
                code,
                status,
            },
            InvokeError::BadRequest(reason) => Failure::BadRequest { reason },
            InvokeError::InvalidReply(reason) => Failure::InvalidReply { function, reason },
            InvokeError::Overloaded(reason) => Failure::Overloaded { reason },
            InvokeError::Host(reason) => Failure::Host { reason },
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NoRoute { .. } | Failure::NoSubscriber { .. } => StatusCode::NOT_FOUND,
            Failure::Overloaded { .. }
            | Failure::ConnectionLimit
            | Failure::RetryRequested { .. }
            | Failure::ReplyNotEmitted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BadRequest { .. } | Failure::MalformedEvent { .. } => StatusCode::BAD_REQUEST,
            Failure::UnsupportedEventFormat { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Failure::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Failure::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            Failure::ErrorCode { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Failure::Unloadable { .. }
            | Failure::Trap { .. }
            | Failure::NoResponse { .. }
            | Failure::Host { .. }
            | Failure::InvalidReply { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The function concerned, if one is.
    pub fn function(&self) -> Option<&str> {
        match self {
            Failure::BodyTooLarge { function, .. } => function.as_deref(),
            Failure::Unloadable { function, .. }
            | Failure::Trap { function, .. }
            | Failure::Deadline { function, .. }
            | Failure::NoResponse { function, .. }
            | Failure::ErrorCode { function, .. }
            | Failure::RetryRequested { function, .. }
            | Failure::Rejected { function, .. }
            | Failure::InvalidReply { function, .. }
            | Failure::ReplyNotEmitted { function, .. } => Some(function),
            _ => None,
        }
    }

    /// Whether the host or a guest is at fault (logged as an error), rather than the
    /// client, the load or a handler's verdict (logged as a warning).
    pub fn is_fault(&self) -> bool {
        self.status().is_server_error() && !self.is_retryable_refusal()
    }

    fn is_retryable_refusal(&self) -> bool {
        matches!(
            self,
            Failure::Overloaded { .. } | Failure::ConnectionLimit | Failure::RetryRequested { .. }
        )
    }

    /// The guest's stack, for a trap.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            Failure::Trap { backtrace, .. } => Some(backtrace),
            _ => None,
        }
    }

    /// What the client is told: enough to act on, while details of traps and host errors
    /// stay in the log under the request id.
    pub fn public_message(&self) -> String {
        match self {
            Failure::Overloaded { reason } => format!("overloaded, retry later: {reason}"),
            Failure::ConnectionLimit => {
                "overloaded, retry later: the host is at its connection limit".to_string()
            }
            Failure::Unloadable { function, .. } => format!(
                "function `{function}` could not be loaded; see the log for this request id"
            ),
            Failure::Trap { function, .. } => {
                format!("function `{function}` failed (trapped); see the log for this request id")
            }
            Failure::Deadline { function, timeout } => {
                format!("function `{function}` did not finish within its {timeout:?} timeout")
            }
            Failure::NoResponse { function, .. } => {
                format!("function `{function}` sent no response; see the log for this request id")
            }
            Failure::ErrorCode { function, code, .. } => {
                format!("function `{function}` failed with the wasi:http error code {code}")
            }
            Failure::Host { .. } => {
                "internal error in the host; see the log for this request id".to_string()
            }
            Failure::BadRequest { reason } => reason.clone(),
            Failure::RetryRequested { message, .. } | Failure::Rejected { message, .. } => {
                message.clone()
            }
            Failure::ReplyNotEmitted { function, reason } => {
                format!("function `{function}`'s reply could not be emitted: {reason}")
            }
            other => other.to_string(),
        }
    }

    /// The response: status, JSON [`ErrorBody`], and the headers the failure needs.
    pub fn into_response(
        self,
        request_id: &str,
        path: Option<&str>,
        event_id: Option<&str>,
    ) -> Response<ResponseBody> {
        let body = ErrorBody {
            error: self.public_message(),
            function: self.function(),
            path: path.filter(|_| matches!(self, Failure::NoRoute { .. })),
            event_id,
            request_id,
        };
        let json = serde_json::to_vec(&body).expect("an ErrorBody always serializes");
        let mut response = Response::new(full(Bytes::from(json)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            Failure::Overloaded { .. } | Failure::ConnectionLimit => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER.as_secs()),
                );
            }
            Failure::RetryRequested {
                after: Some(after), ..
            } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(after.as_secs().max(1)),
                );
            }
            _ => {}
        }
        if matches!(
            self,
            Failure::ConnectionLimit | Failure::BodyTooLarge { .. }
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Failure::BodyTooLarge { .. } = self {
            response.extensions_mut().insert(UnreadBody);
        }
        response
    }
}

/// A whole body from bytes.
pub(crate) fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_knows_its_status_and_headers() {
        let r = Failure::Overloaded { reason: "x".into() }.into_response("id", None, None);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers().get("connection").is_none());

        let r = Failure::ConnectionLimit.into_response("id", None, None);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["connection"], "close");

        let r = Failure::BodyTooLarge {
            function: Some("f".into()),
            limit: 10,
        }
        .into_response("id", None, None);
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["connection"], "close");
        assert!(r.extensions().get::<UnreadBody>().is_some());

        let r = Failure::RetryRequested {
            function: "f".into(),
            message: "later".into(),
            after: Some(Duration::from_secs(7)),
        }
        .into_response("id", None, Some("e1"));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        let r = Failure::RetryRequested {
            function: "f".into(),
            message: "later".into(),
            after: None,
        }
        .into_response("id", None, None);
        assert!(r.headers().get("retry-after").is_none());
    }

    #[test]
    fn traps_keep_their_details_out_of_the_body() {
        let failure = Failure::invoke(
            "f",
            InvokeError::Trap {
                reason: "secret detail".into(),
                backtrace: "frame".into(),
            },
        );
        assert!(failure.is_fault());
        assert!(failure.to_string().contains("secret detail"));
        assert!(!failure.public_message().contains("secret detail"));
        assert_eq!(failure.status(), 500);
        assert!(!Failure::Overloaded { reason: "x".into() }.is_fault());
    }
}
