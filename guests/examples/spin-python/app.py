"""A Spin app written with Spin's Python SDK (spin-sdk 5 on PyPI), built by componentize-py
and served by wasmfn from its spin.toml: key-value, variables and the environment."""

import os

from componentize_py_types import Err
from spin_sdk import http, key_value, redis, variables
from spin_sdk.http import Request, Response


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?")[0]
        if path.endswith("/visit"):
            greeting = await variables.get("greeting")
            with await key_value.open_default() as store:
                visits = int(await store.get("visits") or b"0") + 1
                await store.set("visits", str(visits).encode())
            return text(200, f"{greeting}, visitor {visits}\n")
        if path.endswith("/env"):
            names = sorted(os.environ)
            return text(200, f"{os.environ.get('APP_MODE')} {','.join(names)}\n")
        if path.endswith("/client"):
            # Spin's header for the peer of the connection.
            return text(200, f"{request.headers.get('spin-client-addr')}\n")
        if path.endswith("/redis"):
            # Redis at an address spin.toml's allowed_outbound_hosts does not name: the
            # open is refused with the interface's own error, and the app goes on.
            try:
                await redis.open("redis://127.0.0.1:6379")
                return text(200, "opened\n")
            except Err as e:
                return text(503, f"redis unavailable: {e.value}\n")
        return text(404, f"no page at {path}\n")


def text(status: int, body: str) -> Response:
    return Response(status, {"content-type": "text/plain"}, body.encode())
