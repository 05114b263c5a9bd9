"""The `adnomaly` command."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from adnomaly.anomalies.cli import register as register_anomalies
from adnomaly.bench import BENCHMARKS
from adnomaly.feast.cli import register as register_feast
from adnomaly.local.cli import register as register_local
from adnomaly.spec_cli import register as register_spec


def _bench_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = subparsers.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    for name in BENCHMARKS:
        importlib.import_module(f"adnomaly.bench.{name}").register(bench_sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adnomaly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    register_local(sub)
    register_anomalies(sub)
    register_spec(sub)
    register_feast(sub)
    _bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    if isinstance(result, dict):
        if getattr(args, "json", False):
            print(json.dumps(result, sort_keys=True))
        else:
            for key, value in result.items():
                print(f"{key}: {value}")
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
