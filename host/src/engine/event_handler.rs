//! The `wasmfn:function/event-handler@0.1.0` ABI (wit/events.wit): one CloudEvent in, an
//! optional reply event or a retry/reject verdict out, in a fresh instance per event unless
//! the function reuses instances. A WASI 0.3 handler (`@0.2.0`) answers the same way from
//! an instance handling several at once (event_handler_p3.rs).

use std::time::Duration;

use super::context::CallContext;
use super::emitter;
use super::invocation::Invocation;
use super::state::State;
use super::{EventAbi, Function, InvokeError};
use wasmtime::Store;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit/host.wit"],
        world: "wasmfn:host/event-handling",
        exports: { default: async },
        with: {
            "wasmfn:function/types": super::super::emitter::bindings::wasmfn::function::types,
        },
    });
}

pub(crate) use bindings::EventHandlingIndices as EventHandlerIndices;
use emitter::bindings::wasmfn::function::types::{CloudEvent as GuestEvent, HandlerError};

/// How an event handler answered.
#[derive(Debug)]
pub enum EventOutcome {
    /// Accepted, with an optional reply event.
    Reply(Option<Box<cloudevents::Event>>),
    /// Failed for now; the sender should retry, after `after` if given.
    Retry {
        /// The handler's reason.
        message: String,
        /// How long to wait before retrying.
        after: Option<Duration>,
    },
    /// Rejected for good.
    Reject(String),
}

impl Function {
    /// Delivers one event to the function's event handler in a fresh instance (or an idle
    /// one, for a function that reuses instances), which is dropped when the handler traps
    /// or passes its deadline.
    pub async fn handle_event(
        self,
        event: &cloudevents::Event,
        request_id: &str,
        emit: Option<CallContext>,
    ) -> Result<EventOutcome, InvokeError> {
        let guest_event = emitter::to_guest(event);
        let exports = match &self.inner.event_handler {
            Some(EventAbi::WasiP2(exports)) => exports,
            Some(EventAbi::WasiP3(events)) => {
                let result = events
                    .handle(&self.inner, guest_event, request_id, emit)
                    .await?;
                return outcome(result, &self.inner.name).map_err(InvokeError::InvalidReply);
            }
            None => {
                return Err(InvokeError::Host(format!(
                    "function `{}` has no event handler",
                    self.inner.name
                )));
            }
        };
        let invocation = Invocation::begin(&self.inner, request_id, emit).await?;
        let handle = async |instance: bindings::EventHandling, store: &mut Store<State>| {
            let handler = instance.wasmfn_function_event_handler();
            handler.call_handle(store, &guest_event).await
        };
        let result = invocation.run(exports, handle).await?;
        outcome(result, &self.inner.name).map_err(InvokeError::InvalidReply)
    }
}

fn outcome(
    result: Result<Option<GuestEvent>, HandlerError>,
    function: &str,
) -> Result<EventOutcome, String> {
    Ok(match result {
        Ok(None) => EventOutcome::Reply(None),
        Ok(Some(reply)) => {
            EventOutcome::Reply(Some(Box::new(emitter::from_guest(reply, function)?)))
        }
        Err(HandlerError::Retry(r)) => EventOutcome::Retry {
            message: r.message,
            after: r.after_seconds.map(|s| Duration::from_secs(s.into())),
        },
        Err(HandlerError::Reject(message)) => EventOutcome::Reject(message),
    })
}
