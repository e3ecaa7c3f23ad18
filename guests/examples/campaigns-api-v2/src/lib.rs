//! The deployment seed's `campaigns-api`, v2 (the green revision): the same campaigns,
//! shown with their channels and state history; see the `campaigns` crate.
use wasmfn_sdk::{Request, Response};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    campaigns::handle(req, campaigns::Version::V2)
}
