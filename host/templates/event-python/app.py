"""{{name}}: a CloudEvents function on wasmfn, in Python (wasmfn's event-handler interface,
built with componentize-py). It answers each `{{type}}` event with a `{{type}}.done`
reply carrying the same data; `wasmfn send --type {{type}} --data '{"hello":"world"}'`
sends one. Raise `Err(HandlerError_Retry(Retry(message, None)))` to have the broker
deliver it again, `Err(HandlerError_Reject(message))` to refuse it for good."""
from typing import Optional

from wit_world import exports
from wit_world.imports.wasmfn_function_types import CloudEvent


class EventHandler(exports.EventHandler):
    def handle(self, event: CloudEvent) -> Optional[CloudEvent]:
        return CloudEvent(
            id="",  # the host assigns one
            source="/{{name}}",
            type=f"{event.type}.done",
            subject=event.subject,
            time=None,  # the host stamps it
            datacontenttype=event.datacontenttype,
            dataschema=None,
            extensions=[],
            data=event.data,
        )
