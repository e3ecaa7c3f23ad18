"""A wasi:http handler in Python, built with componentize-py, with no wasmfn code at all.

Proof that wasmfn hosts components from other toolchains unchanged. Build:

    componentize-py -d ../../wit -w wasi:http/proxy@0.2.12 componentize app -o python_hello.wasm
"""
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
        path = request.path_with_query() or "/"
        body = f"Hello from Python at {path}\n".encode()
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
