//! CloudEvents: what event handlers receive, reply with and emit.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::wasmfn::function::types as wit;

/// A CloudEvents 1.0 event.
///
/// ```ignore
/// let reply = CloudEvent::new("order.completed", "/orders")
///     .with_subject(order_id)
///     .with_json(&order)?;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    id: String,
    source: String,
    ty: String,
    subject: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: Vec<(String, String)>,
    data: Option<Vec<u8>>,
}

impl CloudEvent {
    /// A new event of type `ty` from `source`. Its id is left empty, and the host gives it a
    /// fresh UUID when it is emitted or replied; set one with [`CloudEvent::with_id`] to make
    /// redeliveries recognisable downstream.
    pub fn new(ty: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Vec::new(),
            data: None,
        }
    }

    /// The event's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event's type.
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// The event's subject.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// When the event happened, RFC 3339.
    pub fn time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// The media type of the data.
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }

    /// The schema the data adheres to.
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }

    /// The value of an extension attribute.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every extension attribute, as (name, value).
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// The raw data.
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// The data as UTF-8 text.
    pub fn text(&self) -> Option<&str> {
        self.data
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())
    }

    /// The data parsed as JSON into `T`; a rejection (422) if it does not parse, because
    /// redelivering the same bytes cannot help.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let data = self.data.as_deref().ok_or_else(|| {
            Error::reject(format!("event {} of type {} has no data", self.id, self.ty))
        })?;
        serde_json::from_slice(data).map_err(|e| {
            Error::reject(format!(
                "event {} of type {}: data is not the expected JSON: {e}",
                self.id, self.ty
            ))
        })
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the type.
    pub fn with_type(mut self, ty: impl Into<String>) -> Self {
        self.ty = ty.into();
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time (RFC 3339, e.g. `2026-11-21T10:00:00Z`).
    pub fn with_time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Sets the data schema (an absolute URI).
    pub fn with_dataschema(mut self, schema: impl Into<String>) -> Self {
        self.dataschema = Some(schema.into());
        self
    }

    /// Sets an extension attribute (name: lowercase ASCII letters and digits), replacing
    /// an earlier value.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.extensions.retain(|(k, _)| *k != name);
        self.extensions.push((name, value.into()));
        self
    }

    /// Sets the data and its media type.
    pub fn with_data(mut self, content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.datacontenttype = Some(content_type.into());
        self.data = Some(data.into());
        self
    }

    /// Sets the data to `value` as `application/json`.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("cannot serialize event data: {e}")))?;
        Ok(self.with_data("application/json", data))
    }
}

/// Sends `event` to the sink the host was given (`K_SINK`, usually a Knative Broker) or,
/// without one, to the functions in the same host that subscribe to it. Returns once it is
/// accepted; the error is retryable (503) when the sink kept refusing, so `?` in an event
/// handler makes the broker redeliver the event that caused this one.
pub fn emit(event: CloudEvent) -> Result<(), Error> {
    crate::wit::wasmfn::function::emitter::emit(&event.into())
        .map_err(|reason| Error::retry(format!("emitting the event failed: {reason}")))
}

impl From<wit::CloudEvent> for CloudEvent {
    fn from(e: wit::CloudEvent) -> Self {
        Self {
            id: e.id,
            source: e.source,
            ty: e.type_,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

impl From<CloudEvent> for wit::CloudEvent {
    fn from(e: CloudEvent) -> Self {
        Self {
            id: e.id,
            source: e.source,
            type_: e.ty,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

/// What an event handler may return: `Ok(Some(reply))`, `Ok(None)` or an [`Error`].
pub trait IntoEventResult {
    /// Converts into the handler's result.
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error>;
}

impl IntoEventResult for Result<Option<CloudEvent>, Error> {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        self
    }
}

impl IntoEventResult for Result<CloudEvent, Error> {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        self.map(Some)
    }
}

impl IntoEventResult for Result<(), Error> {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        self.map(|()| None)
    }
}

impl IntoEventResult for Option<CloudEvent> {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        Ok(self)
    }
}

impl IntoEventResult for CloudEvent {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        Ok(Some(self))
    }
}

impl IntoEventResult for () {
    fn into_event_result(self) -> Result<Option<CloudEvent>, Error> {
        Ok(None)
    }
}

pub(crate) fn into_handler_result(
    result: Result<Option<CloudEvent>, Error>,
) -> Result<Option<wit::CloudEvent>, wit::HandlerError> {
    match result {
        Ok(reply) => Ok(reply.map(Into::into)),
        Err(e) if e.is_retryable() => Err(wit::HandlerError::Retry(wit::Retry {
            message: e.message().to_string(),
            after_seconds: e.retry_after_seconds(),
        })),
        Err(e) => Err(wit::HandlerError::Reject(e.message().to_string())),
    }
}
