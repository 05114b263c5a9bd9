"""`adnomaly bench reliability --minutes N --seed S [--json]`: the fault suite as a benchmark.

Runs the whole pipeline locally (Kafka, PostgreSQL, MinIO, Redis, Flink, every component), loads it with
generator events (and a share through the ingest API) while a chaos driver seeded with S kills and restarts
components and services at random moments, drains, and verifies every acknowledged event id is stored
exactly once in PostgreSQL and in exactly one lake file, and that features recomputed from the lake equal
those in PostgreSQL and Redis. Prints {"events", "lost", "duplicated", "kills", "max_recovery_s", ...}.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from adnomaly.reliability.run import RunSettings, run_reliability
from adnomaly.reliability.schedule import ALL_TARGETS


def run(args: argparse.Namespace) -> dict[str, Any]:
    targets = tuple(args.targets.split(",")) if args.targets else ALL_TARGETS
    settings = RunSettings(
        minutes=args.minutes, seed=args.seed, faults=args.faults, rate=args.rate, targets=targets,
        state_dir=args.state_dir,
    )  # fmt: skip
    return run_reliability(settings, say=lambda line: print(line, file=sys.stderr, flush=True))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "reliability", help="events lost/duplicated under seeded kills and outages, and recovery time",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes of load (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="chaos schedule and generator seed")
    parser.add_argument("--faults", type=int, help="faults to inject (default: one per ~15 s of load)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second (default %(default)s)")
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(ALL_TARGETS)}")
    parser.add_argument("--state-dir", type=Path, help="keep the services' state here (default: temporary)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
