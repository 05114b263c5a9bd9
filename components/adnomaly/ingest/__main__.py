"""`python -m adnomaly.ingest --config PATH`: serve the ingest API with uvicorn (uvloop + httptools).

Tokens come from $ADNOMALY_INGEST_TOKENS (never from the config or the command line). SIGTERM/SIGINT stop
accepting connections, let in-flight requests finish, then flush the Kafka producer and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
from prometheus_client import start_http_server

from adnomaly.config import SecretEnv, load_config, secret_from_env
from adnomaly.ingest.app import create_app
from adnomaly.ingest.auth import parse_tokens

GRACEFUL_SHUTDOWN_S = 30


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.ingest", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    if config.ingest is None:
        raise SystemExit(f"{args.config or 'the config'} has no `ingest` section")
    try:
        tokens = parse_tokens(secret_from_env(SecretEnv.INGEST_TOKENS))
    except ValueError as exc:
        raise SystemExit(f"{SecretEnv.INGEST_TOKENS}: {exc}") from None
    if not tokens:
        raise SystemExit(f"{SecretEnv.INGEST_TOKENS} holds no token")
    app = create_app(config, tokens=tokens)
    if config.metrics_port and config.metrics_port != config.ingest.port:
        # /metrics is on the API port too; this serves the same registry where the backend scrapes.
        start_http_server(config.metrics_port, registry=app.state.metrics.registry)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.ingest.host, port=config.ingest.port, loop="uvloop", http="httptools",
            lifespan="on", access_log=False, server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    )  # fmt: skip
    _exit_zero_after_drain(server)
    server.run()
    return 0 if server.started else 1


def _exit_zero_after_drain(server: uvicorn.Server) -> None:
    """uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler it found installed.
    Install one that lets a drained process end normally (exit 0), and stops one still starting up."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not server.started:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


if __name__ == "__main__":
    sys.exit(main())
