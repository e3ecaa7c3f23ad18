//! CloudEvents at run time: delivering events to functions and sending on what they emit
//! ([`dispatch`]), the sink emitted events go to ([`sink`]), and schedules fired from the
//! host ([`schedule`]). The HTTP binding is the leaf [`crate::cloudevent`]; subscriptions
//! as declared are [`crate::manifest::subscription`]. Nothing here knows the HTTP front
//! (`server`) above it.

pub mod dispatch;
pub mod schedule;
pub mod sink;

pub use dispatch::{Dispatcher, MAX_EVENT_BODY, Recipients, Refused};
pub use sink::{EventOptions, EventOptionsError, SendError, Sink};
