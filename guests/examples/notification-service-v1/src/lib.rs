//! The deployment seed's `notification-service`, v1: still served beside v3 for clients
//! of its API v1 (the seed's multi-version support); see the `notifications` crate.
use wasmfn_sdk::{CloudEvent, Error};

#[wasmfn_sdk::event]
fn notify(event: CloudEvent) -> Result<(), Error> {
    notifications::notify(event, notifications::Version::V1)
}
