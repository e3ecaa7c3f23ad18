//! {{name}}: a CloudEvents function on wasmfn (WASI 0.3: one instance handles many events,
//! several at once). It answers each `{{type}}` event with a `{{type}}.done` reply carrying
//! the same data; `wasmfn send --type {{type}} --data '{"hello":"world"}'` sends one.
use wasmfn_sdk::{CloudEvent, Error};

#[wasmfn_sdk::event]
async fn handle(event: CloudEvent) -> Result<Option<CloudEvent>, Error> {
    let mut reply = CloudEvent::new(format!("{}.done", event.ty()), "/{{name}}");
    if let Some(data) = event.data() {
        let content_type = event.datacontenttype().unwrap_or("application/octet-stream");
        reply = reply.with_data(content_type, data.to_vec());
    }
    Ok(Some(reply))
}
