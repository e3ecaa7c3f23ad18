"""{{name}}: an HTTP function on wasmfn, in Python (a standard wasi:http component, built
with componentize-py). `wasmfn invoke /{{name}}?name=Ada` calls it."""
from urllib.parse import parse_qs, urlparse

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        query = parse_qs(urlparse(request.path_with_query() or "/").query)
        name = query.get("name", ["world"])[0]
        body = f"Hello, {name}!\n".encode()
        response = OutgoingResponse(
            Fields.from_list([
                ("content-type", b"text/plain; charset=utf-8"),
                ("content-length", str(len(body)).encode()),
            ])
        )
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = outgoing.write()
        stream.blocking_write_and_flush(body)
        stream.__exit__(None, None, None)
        OutgoingBody.finish(outgoing, None)
