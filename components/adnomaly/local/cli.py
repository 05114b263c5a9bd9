"""`adnomaly up` (and friends) on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from adnomaly.local.ports import ENDPOINTS, PortTaken, parse_port_flag
from adnomaly.local.status import register as register_status
from adnomaly.spec import SpecError


def _up(args: argparse.Namespace) -> int:
    from adnomaly.local.up import UpOptions, run_up
    from adnomaly.services.base import ServiceError

    try:
        run_up(
            UpOptions(
                pipeline_file=args.file,
                state_dir=args.state_dir,
                run_for=args.run_for,
                invalid_rate=args.invalid_rate,
                summary_json=args.summary_json,
                ports=dict(args.ports),
            )
        )
    except SpecError as exc:
        print(f"invalid pipeline: {exc}")
        return 2
    except PortTaken as exc:
        print(f"cannot start: {exc}")
        return 2
    except ServiceError as exc:
        print(f"a service failed: {exc}")
        return 1
    return 0


def _port(text: str) -> tuple[str, int]:
    try:
        return parse_port_flag(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = subparsers.add_parser("up", help="run a Pipeline on this machine")
    up.add_argument("-f", "--file", type=Path, required=True, help="the Pipeline YAML")
    up.add_argument("--for", dest="run_for", type=float, default=None, metavar="SECONDS",
                    help="run this long, then drain and stop (default: until Ctrl-C)")
    up.add_argument("--invalid-rate", type=_fraction, default=None, metavar="F",
                    help="override the generator's fraction of malformed events")
    up.add_argument("--state-dir", type=Path, default=Path(".adnomaly"), metavar="DIR",
                    help="where data lives, kept between runs (default .adnomaly/)")
    up.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                    help='write {"produced", "ingested", "duplicates", "stored", "dlq", "lag", "anomalies": {"opened", '
                    '"resolved"}} here at the end')
    up.add_argument("--port", dest="ports", type=_port, action="append", default=[], metavar="NAME=PORT",
                    help=f"the port of an endpoint ({', '.join(ENDPOINTS)}); kept for later runs on the same "
                    "state directory, as the ports chosen the first time are")
    up.set_defaults(func=_up)
    register_status(subparsers)
