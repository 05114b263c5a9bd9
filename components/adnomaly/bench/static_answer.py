"""The HTTP floor of `adnomaly bench online --rate`: one constant answer, served by the serving API's own stack.

`python -m adnomaly.bench.static_answer --port P --body FILE` runs uvicorn exactly as `adnomaly.serving` does
(uvloop, its lookup protocol `adnomaly.serving.lookup_protocol`, no access log, no server header), with a
lookup always at hand: the bytes of FILE (an answer the real API gave) with the same two headers. Anything
else (not a lookup) gets the same bytes from a plain ASGI app. Nothing else happens per request: no parsing
of the query, no Redis, no JSON, no metrics. The same open-loop load against it,
in the same run, is what any lookup served by this stack on this machine can at best do; the API's latency
over it is what our own code adds (`http_floor_…` fields of `adnomaly bench online --rate`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from starlette.types import Receive, Scope, Send

from adnomaly.serving.lookup_protocol import protocol_answering


def answer_app(body: bytes) -> object:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: nothing to start
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.bench.static_answer", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True, help="the bytes to answer every request with")
    args = parser.parse_args(argv)
    body = args.body.read_bytes()

    def constant(_view: str, _query: bytes) -> tuple[int, bytes]:
        return 200, body

    uvicorn.run(
        answer_app(body), host="127.0.0.1", port=args.port, loop="uvloop", http=protocol_answering(constant),
        lifespan="off", log_level="warning", access_log=False, server_header=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
