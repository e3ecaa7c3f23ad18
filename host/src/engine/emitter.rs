//! The `emitter` import (wit/events.wit), which any function may use to send events, and
//! the conversions between the guest's `cloud-event` record and `cloudevents::Event`. Where
//! an emitted event goes is decided outside the engine, behind [`Emit`](super::Emit).

use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV10};

use std::sync::Arc;

use super::context::{CallContext, Emit, EmitError, MAX_EMITS_PER_INVOCATION};
use super::state::State;
use crate::cloudevent;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit/host.wit"],
        world: "wasmfn:host/emitting",
        imports: { default: async },
    });
}

use bindings::wasmfn::function::types::CloudEvent as GuestEvent;

/// The emitting side of one invocation's store.
pub(crate) struct Emitting {
    ctx: CallContext,
    function: Arc<str>,
    emitted: usize,
}

impl Emitting {
    pub(crate) fn new(ctx: CallContext, function: Arc<str>) -> Self {
        Self::resume(ctx, function, 0)
    }

    /// The emitting side of a request that already emitted `emitted` events (a WASI 0.3
    /// instance switching between the requests it runs).
    pub(crate) fn resume(ctx: CallContext, function: Arc<str>, emitted: usize) -> Self {
        Self {
            ctx,
            function,
            emitted,
        }
    }

    pub(crate) fn emitted(&self) -> usize {
        self.emitted
    }
}

impl State {
    /// Checks an event the guest emits and counts it against the invocation's share: where
    /// it goes, the event with the invocation's trace, and its hop count.
    fn prepare_emit(&mut self, event: GuestEvent) -> Result<(Arc<dyn Emit>, Event, u32), String> {
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
        Ok((emitting.ctx.emitter.clone(), event, emitting.ctx.hops + 1))
    }
}

impl bindings::wasmfn::function::types::Host for State {}

impl bindings::wasmfn::function::emitter::Host for State {
    async fn emit(&mut self, event: GuestEvent) -> Result<(), String> {
        let (emitter, event, hops) = self.prepare_emit(event)?;
        emitter.emit(event, hops).await.map_err(|e| e.to_string())
    }
}

/// `wasmfn:function@0.2.0` (wit/p3), the WASI 0.3 contract: `emit` is an async function,
/// so a guest waiting for one lets the instance's other requests run.
pub(crate) mod p3 {
    use wasmtime::component::{Accessor, HasData};

    use super::{GuestEvent, State};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: "../wit/p3",
            world: "wasmfn:function/async-event-function",
            with: {
                "wasmfn:function/types": super::super::bindings::wasmfn::function::types,
            },
        });
    }

    /// The `HasData` of the interface: its functions reach the instance's [`State`].
    pub(crate) struct Emitter;

    impl HasData for Emitter {
        type Data<'a> = &'a mut State;
    }

    impl bindings::wasmfn::function::emitter::Host for State {}

    impl<T> bindings::wasmfn::function::emitter::HostWithStore<T> for Emitter {
        async fn emit(accessor: &Accessor<T, Self>, event: GuestEvent) -> Result<(), String> {
            // Read now, while this call's request is the one in place (concurrent.rs).
            let (emitter, event, hops) =
                accessor.with(|mut view| view.get().prepare_emit(event))?;
            emitter.emit(event, hops).await.map_err(|e| e.to_string())
        }
    }
}

/// The guest's view of an event.
pub(crate) fn to_guest(event: &Event) -> GuestEvent {
    GuestEvent {
        id: event.id().to_string(),
        source: event.source().to_string(),
        type_: event.ty().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().map(cloudevent::format_time),
        datacontenttype: event.datacontenttype().map(str::to_string),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| (k.to_string(), cloudevent::extension_string(v)))
            .collect(),
        data: event
            .data()
            .map(|d| cloudevent::data_bytes(Some(d)).to_vec()),
    }
}

/// An event a guest replied with or emitted, checked like one that arrived over HTTP. An
/// empty id becomes a fresh UUID, an empty source `/wasmfn/<function>`, and a missing time
/// the present.
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
    // Filled when missing, as the id and source are: an event is stamped when it leaves
    // the guest.
    let time = match e.time {
        Some(time) => chrono::DateTime::parse_from_rfc3339(&time)
            .map_err(|err| format!("time {time:?} is not an RFC 3339 time: {err}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    builder = builder.time(time);
    for (name, value) in e.extensions {
        builder = builder.extension(&name, value);
    }
    let data = e
        .data
        .map(|bytes| cloudevent::data_from_bytes(e.datacontenttype.as_deref(), bytes));
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
    cloudevent::validate(&event)?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_event(id: &str, source: &str) -> GuestEvent {
        GuestEvent {
            id: id.into(),
            source: source.into(),
            type_: "order.created".into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: vec![],
            data: None,
        }
    }

    #[test]
    fn an_emitted_event_without_id_source_or_time_gets_them() {
        let event = from_guest(guest_event("", ""), "orders").unwrap();
        assert!(uuid::Uuid::parse_str(event.id()).is_ok(), "{}", event.id());
        assert_eq!(event.source().to_string(), "/wasmfn/orders");
        assert!(event.time().is_some());
        // What the guest set is kept.
        let event = from_guest(guest_event("o-1", "/saga/orders"), "orders").unwrap();
        assert_eq!(
            (event.id(), event.source().as_str()),
            ("o-1", "/saga/orders")
        );
    }
}
