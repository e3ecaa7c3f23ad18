//! The deployment seed's `campaigns-api`, v1 (the blue revision): see the `campaigns` crate.
use wasmfn_sdk::{Request, Response};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    campaigns::handle(req, campaigns::Version::V1)
}
