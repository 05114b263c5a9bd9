"""`python -m adnomaly.ingest --config PATH`: serve the ingest API with uvicorn (uvloop + httptools).

Tokens come from $ADNOMALY_INGEST_TOKENS, or from the file named by $ADNOMALY_INGEST_TOKENS_FILE (never from
the config or the command line). The file is re-read when it changes and on SIGHUP, so tokens rotate without a
restart. SIGTERM/SIGINT stop accepting connections, let in-flight requests finish, then flush the Kafka
producer and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvicorn
from prometheus_client import start_http_server

from adnomaly.config import SecretEnv, load_config, secret_from_env
from adnomaly.http_server import serve_until_drained
from adnomaly.ingest.app import create_app
from adnomaly.ingest.auth import TokenFile, TokenSet, parse_tokens

GRACEFUL_SHUTDOWN_S = 30


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.ingest", description=__doc__)
    parser.add_argument("--config", help="component config (JSON); default: $ADNOMALY_CONFIG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    if config.ingest is None:
        raise SystemExit(f"{args.config or 'the config'} has no `ingest` section")
    app = create_app(config, tokens=_tokens())
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
    return serve_until_drained(server)


def _tokens() -> TokenSet | TokenFile:
    """The valid tokens: a TokenFile (re-read on change and on SIGHUP) or the fixed set from the env."""
    path = os.environ.get(SecretEnv.INGEST_TOKENS_FILE)
    if path and os.environ.get(SecretEnv.INGEST_TOKENS):
        raise SystemExit(f"set {SecretEnv.INGEST_TOKENS} or {SecretEnv.INGEST_TOKENS_FILE}, not both")
    try:
        if path:
            source = TokenFile(path)
            signal.signal(signal.SIGHUP, lambda _signum, _frame: source.request_reload())
            return source
        tokens = parse_tokens(secret_from_env(SecretEnv.INGEST_TOKENS))
    except ValueError as exc:  # never holds a token
        raise SystemExit(f"ingest tokens: {exc}") from None
    if not tokens:
        raise SystemExit(f"{SecretEnv.INGEST_TOKENS} holds no token")
    return TokenSet(tokens)


if __name__ == "__main__":
    sys.exit(main())
