//! CloudEvents: the HTTP binding ([`codec`]), subscriptions ([`filter`]), and where emitted
//! events go ([`outbox`]).

pub mod codec;
pub mod filter;
pub mod outbox;

pub use codec::{DecodeError, Mode};
pub use filter::{Filter, Subscription};
pub use outbox::{EventOptions, Sink};
