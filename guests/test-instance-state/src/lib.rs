//! Test guest: keeps state in globals, as a guest that assumes a fresh instance per request
//! must not, and as one written for reuse may. Every request and event adds one to a
//! counter and answers with it and the instance's random name (`x-served`, `x-instance`
//! on HTTP; `served` and `instance` in a reply event's data), so a test sees which requests
//! one instance served. `/trap` panics.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use wasmfn_sdk::{CloudEvent, Request, Response};

static SERVED: AtomicU32 = AtomicU32::new(0);
static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// The count after this request, and the instance's name.
fn count() -> (u32, String) {
    if INSTANCE.load(Ordering::Relaxed) == 0 {
        let seed = std::collections::hash_map::RandomState::new();
        INSTANCE.store(
            std::hash::BuildHasher::hash_one(&seed, 0u8) | 1,
            Ordering::Relaxed,
        );
    }
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    (served, format!("{:016x}", INSTANCE.load(Ordering::Relaxed)))
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    let (served, instance) = count();
    if req.path().ends_with("/trap") {
        panic!("asked to trap after {served} requests");
    }
    Response::new(200)
        .with_header("x-served", served.to_string())
        .with_header("x-instance", instance.as_str())
        .with_body(format!("request {served} of instance {instance}\n"))
}

#[wasmfn_sdk::event]
fn on_event(event: CloudEvent) -> CloudEvent {
    let (served, instance) = count();
    let ty = format!("{}.counted", event.ty());
    event.with_type(ty).with_id("").with_data(
        "application/json",
        format!("{{\"served\":{served},\"instance\":\"{instance}\"}}"),
    )
}
