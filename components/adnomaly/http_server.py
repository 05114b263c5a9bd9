"""Running a component's HTTP API (uvicorn) so that SIGTERM/SIGINT drain it and the process exits 0."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn


def serve_until_drained(server: uvicorn.Server) -> int:
    """Run `server`; 0 once it has drained after SIGTERM/SIGINT, 1 when it never started (e.g. port taken).

    uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler it found installed:
    install one that lets a drained server end normally and stops one still starting up.
    """

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not server.started:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.run()
    return 0 if server.started else 1
