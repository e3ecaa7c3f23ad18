//! What an invocation can reach beyond its own instance, and where it sits in a chain of
//! calls: the [`CallContext`]. Events it emits go to an [`Emit`]; HTTP requests to another
//! function of this host go to a [`CallFunction`]; both are implemented outside the engine
//! (events::Dispatcher, functions::Functions), so the engine knows neither.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cloudevents::Event;

use super::ResponseBody;
use crate::outbound::OutboundBody;
use crate::telemetry::TraceContext;

/// How many in-process hops one chain (emitted events, calls to other functions of this
/// host) may take before it is stopped as a loop.
pub const HOP_LIMIT: u32 = 32;

/// Whether a hop that would be the `hops`th of its chain is one too many. The one check
/// both kinds of hop go through, so an event loop and a call loop stop at the same depth.
pub fn beyond_hop_limit(hops: u32) -> bool {
    hops > HOP_LIMIT
}

/// One invocation emits at most this many events, so a looping guest cannot flood a sink.
pub(super) const MAX_EMITS_PER_INVOCATION: usize = 1000;

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

/// Sends an HTTP request to another function of this host, in process.
pub trait CallFunction: Send + Sync + 'static {
    /// `request` for function `name`, made by an invocation in `context` (whose hop count
    /// is already one further); the response as a client would see it, failures included.
    fn call(
        self: Arc<Self>,
        name: String,
        request: http::Request<OutboundBody>,
        context: CallContext,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, NoSuchFunction>> + Send>>;
}

/// A call to a function this host does not have.
#[derive(Debug, Clone, thiserror::Error)]
#[error("this host has no function `{0}`")]
pub struct NoSuchFunction(pub String);

/// What an invocation may reach, and where it sits in a chain of calls.
#[derive(Clone)]
pub struct CallContext {
    /// Where emitted events go.
    pub emitter: Arc<dyn Emit>,
    /// Where requests to other functions of this host go.
    pub functions: Arc<dyn CallFunction>,
    /// In-process hops between the original request and this invocation (0 for a request).
    pub hops: u32,
    /// The trace context of the request, carried onto emitted events.
    pub trace: Option<TraceContext>,
    /// The id of the request that started the chain, for the log.
    pub request_id: Arc<str>,
}
