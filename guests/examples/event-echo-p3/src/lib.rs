//! event-echo as a WASI 0.3 component: replies to every event with a copy of it whose type
//! is the original type + `.echo` and whose id is new. Its instances handle many events,
//! several at once; the benchmarks set it beside the WASI 0.2 event-echo.
use wasmfn_sdk::CloudEvent;

#[wasmfn_sdk::event]
async fn echo(event: CloudEvent) -> CloudEvent {
    let ty = format!("{}.echo", event.ty());
    event.with_type(ty).with_id("")
}
