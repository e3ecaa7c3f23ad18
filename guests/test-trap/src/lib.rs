//! Test guest: panics, which in a wasm32 guest aborts with `unreachable` — a trap the host
//! must turn into a 500 carrying a request id, without harming the next request.
use wasmfn_sdk::Request;

#[wasmfn_sdk::http]
fn handle(req: Request) -> String {
    panic!("test-trap was asked to fail on {}", req.path());
}
