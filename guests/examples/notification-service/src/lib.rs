//! The deployment seed's `notification-service`, v3, the newest: order, payment and
//! campaign events to a webhook, once each; see the `notifications` crate.
use wasmfn_sdk::{CloudEvent, Error};

#[wasmfn_sdk::event]
fn notify(event: CloudEvent) -> Result<(), Error> {
    notifications::notify(event, notifications::Version::V3)
}
