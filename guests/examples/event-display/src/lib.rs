//! Logs every event it receives, in the layout of Knative's `event_display` sample. What a
//! guest prints lands in the host's log with the function's name and the request id.
use wasmfn_sdk::CloudEvent;

#[wasmfn_sdk::event]
fn display(event: CloudEvent) {
    let mut out = String::from("☁️  cloudevents.Event\nContext Attributes,\n  specversion: 1.0\n");
    out.push_str(&format!(
        "  type: {}\n  source: {}\n  id: {}\n",
        event.ty(),
        event.source(),
        event.id()
    ));
    for (name, value) in [
        ("subject", event.subject()),
        ("time", event.time()),
        ("datacontenttype", event.datacontenttype()),
        ("dataschema", event.dataschema()),
    ] {
        if let Some(value) = value {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    }
    if !event.extensions().is_empty() {
        out.push_str("Extensions,\n");
        for (name, value) in event.extensions() {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    }
    if let Some(data) = event.data() {
        out.push_str("Data,\n  ");
        match event.text() {
            Some(text) => out.push_str(text),
            None => out.push_str(&format!("({} bytes of binary data)", data.len())),
        }
        out.push('\n');
    }
    print!("{out}");
}
