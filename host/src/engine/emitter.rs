//! The `emitter` import (wit/events.wit), which any function may use to send events, and
//! the conversions between the guest's `cloud-event` record and `cloudevents::Event`. Where
//! an emitted event goes is decided outside the engine, behind [`Emit`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV10};

use super::state::State;
use crate::events::codec;
use crate::telemetry::TraceContext;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit/host.wit"],
        world: "wasmfn:host/emitting",
        imports: { default: async },
    });
}

use bindings::wasmfn::function::types::CloudEvent as GuestEvent;

/// Why an emitted event was not accepted; the guest reads it as the error of `emit`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmitError {
    /// The event breaks the CloudEvents spec.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The invocation was not given anywhere to emit to.
    #[error("this invocation cannot emit events")]
    Unavailable,
    /// The invocation already emitted its share.
    #[error("one invocation may emit at most {MAX_EMITS_PER_INVOCATION} events")]
    TooMany,
    /// The sink, or this host's subscribers, did not accept it.
    #[error("{0}")]
    NotDelivered(String),
}

/// Where emitted events go; implemented outside the engine (the sink client, or in-process
/// dispatch), so the engine stays ignorant of HTTP clients and routing.
pub trait Emit: Send + Sync + 'static {
    /// Delivers `event`, emitted `hops` deliveries away from the request that started the
    /// chain. Resolves once it is accepted, or with the reason it was not.
    fn emit(
        self: Arc<Self>,
        event: Event,
        hops: u32,
    ) -> Pin<Box<dyn Future<Output = Result<(), EmitError>> + Send>>;
}

/// What an invocation may emit through, and where it sits in a chain of events.
#[derive(Clone)]
pub struct EmitContext {
    /// Where emitted events go.
    pub emitter: Arc<dyn Emit>,
    /// Deliveries between the original request and this invocation (0 for a request).
    pub hops: u32,
    /// The trace context of the request, carried onto emitted events.
    pub trace: Option<TraceContext>,
    /// The id of the request that started the chain, for the log.
    pub request_id: String,
}

/// One invocation emits at most this many events, so a looping guest cannot flood a sink.
const MAX_EMITS_PER_INVOCATION: usize = 1000;

/// The emitting side of one invocation's store.
pub(crate) struct Emitting {
    ctx: EmitContext,
    function: String,
    emitted: usize,
}

impl Emitting {
    pub(crate) fn new(ctx: EmitContext, function: &str) -> Self {
        Self {
            ctx,
            function: function.to_string(),
            emitted: 0,
        }
    }
}

impl bindings::wasmfn::function::types::Host for State {}

impl bindings::wasmfn::function::emitter::Host for State {
    async fn emit(&mut self, event: GuestEvent) -> Result<(), String> {
        let Some(emitting) = self.emitting.as_mut() else {
            return Err(EmitError::Unavailable.to_string());
        };
        if emitting.emitted >= MAX_EMITS_PER_INVOCATION {
            return Err(EmitError::TooMany.to_string());
        }
        let mut event = from_guest(event, &emitting.function)
            .map_err(|reason| EmitError::Invalid(reason).to_string())?;
        if let Some(trace) = &emitting.ctx.trace {
            trace.apply_to(&mut event);
        }
        emitting.emitted += 1;
        let (emitter, hops) = (emitting.ctx.emitter.clone(), emitting.ctx.hops + 1);
        emitter.emit(event, hops).await.map_err(|e| e.to_string())
    }
}

/// The guest's view of an event.
pub(crate) fn to_guest(event: &Event) -> GuestEvent {
    GuestEvent {
        id: event.id().to_string(),
        source: event.source().to_string(),
        type_: event.ty().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().map(codec::format_time),
        datacontenttype: event.datacontenttype().map(str::to_string),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| (k.to_string(), codec::extension_string(v)))
            .collect(),
        data: event.data().map(|d| codec::data_bytes(Some(d)).to_vec()),
    }
}

/// An event a guest replied with or emitted, checked like one that arrived over HTTP. An
/// empty id becomes a fresh UUID and an empty source `/wasmfn/<function>`.
pub(crate) fn from_guest(e: GuestEvent, function: &str) -> Result<Event, String> {
    let id = if e.id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        e.id
    };
    let source = if e.source.is_empty() {
        format!("/wasmfn/{function}")
    } else {
        e.source
    };
    let mut builder = EventBuilderV10::new().id(id).source(source).ty(e.type_);
    if let Some(subject) = e.subject {
        builder = builder.subject(subject);
    }
    if let Some(time) = e.time {
        let parsed = chrono::DateTime::parse_from_rfc3339(&time)
            .map_err(|err| format!("time {time:?} is not an RFC 3339 time: {err}"))?;
        builder = builder.time(parsed.with_timezone(&chrono::Utc));
    }
    for (name, value) in e.extensions {
        builder = builder.extension(&name, value);
    }
    let data = e
        .data
        .map(|bytes| codec::data_from_bytes(e.datacontenttype.as_deref(), bytes));
    if let (Some(ct), Some(data)) = (&e.datacontenttype, &data) {
        builder = builder.data(ct.clone(), data.clone());
    }
    let mut event = builder.build().map_err(|err| err.to_string())?;
    match (e.datacontenttype, data) {
        (None, Some(data)) => {
            event.set_data_unchecked(data);
        }
        (Some(ct), None) => {
            event.set_datacontenttype(Some(ct));
        }
        _ => {}
    }
    if let Some(schema) = e.dataschema {
        let url = url::Url::parse(&schema)
            .map_err(|err| format!("dataschema {schema:?} is not an absolute URI: {err}"))?;
        event.set_dataschema(Some(url));
    }
    codec::validate(&event)?;
    Ok(event)
}
