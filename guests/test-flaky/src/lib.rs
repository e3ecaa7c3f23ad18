//! Test guest: a release that went wrong. It answers 500 to `fail_percent` percent of its
//! requests (chosen at random; 0 when the variable is unset) and `ok` to the rest, so a
//! rollout can be judged, and rolled back, on the host's error figures.
use std::hash::BuildHasher;

use wasmfn_sdk::{Request, Response, variables};

#[wasmfn_sdk::http]
fn handle(_req: Request) -> Response {
    let fail_percent: u64 = variables::get("fail_percent")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Seeded from wasi:random in every fresh instance.
    let roll = std::collections::hash_map::RandomState::new().hash_one(0u8) % 100;
    if roll < fail_percent {
        Response::new(500).with_body("flaky failed\n")
    } else {
        Response::new(200).with_body("ok\n")
    }
}
