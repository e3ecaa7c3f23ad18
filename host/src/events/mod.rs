//! CloudEvents: the HTTP binding ([`codec`]), subscriptions ([`filter`]), delivering events
//! to functions and sending on what they emit ([`dispatch`]), the sink emitted events go
//! to ([`sink`]), and schedules fired from the host ([`schedule`]). Nothing here knows the
//! HTTP front (`server`) above it.

pub mod codec;
pub mod dispatch;
pub mod filter;
pub mod schedule;
pub mod sink;

pub use codec::{DecodeError, Mode};
pub use dispatch::{Dispatcher, HOP_LIMIT, MAX_EVENT_BODY, Recipients, Refused};
pub use filter::{Filter, Subscription};
pub use sink::{EventOptions, EventOptionsError, SendError, Sink};
