//! Replies to every event with a copy of it whose type is the original type + `.echo`
//! and whose id is new (the host assigns one), so a sender can check the binding end to end.
use wasmfn_sdk::CloudEvent;

#[wasmfn_sdk::event]
fn echo(event: CloudEvent) -> CloudEvent {
    let ty = format!("{}.echo", event.ty());
    event.with_type(ty).with_id("")
}
