"""`python -m adnomaly.generator --config PATH [--stats-file PATH] [--labels PATH] [--max-events N]`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from adnomaly.config import ComponentConfig, load_config
from adnomaly.generator.runner import GeneratorError, RunOptions, run_generator
from adnomaly.generator.scenarios import ScheduleSettings
from adnomaly.observability import serve_metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adnomaly.generator",
        description="Produce synthetic events (and labelled anomaly scenarios) to the pipeline's raw topic.",
    )
    parser.add_argument("--config", type=Path, help="component config JSON (default: $ADNOMALY_CONFIG)")
    parser.add_argument("--stats-file", type=Path, help="write delivery stats JSON here (refreshed 4 times a second)")
    parser.add_argument("--labels", type=Path, help="append scenario labels (JSON lines) to this file")
    parser.add_argument("--max-events", type=_positive_int, help="stop after this many events")
    parser.add_argument("--scenario-first", type=float, metavar="SECONDS",
                        help="normal traffic before the first scenario (default: the config's schedule)")
    parser.add_argument("--scenario-every", type=float, metavar="SECONDS",
                        help="one scenario per this much time (default: the config's schedule)")
    parser.add_argument("--scenario-duration", type=float, metavar="SECONDS",
                        help="how long each scenario lasts (default: the config's schedule)")  # fmt: skip
    return parser


def schedule_overrides(args: argparse.Namespace, config: ComponentConfig) -> dict[str, ScheduleSettings]:
    """The config's scenario schedule with the command line's values in place of its own (none given: {})."""
    given = {
        name: value for name, value in (
            ("first_after_s", args.scenario_first), ("every_s", args.scenario_every),
            ("duration_s", args.scenario_duration),
        ) if value is not None
    }  # fmt: skip
    if not given:
        return {}
    planned = config.generator.scenario_schedule if config.generator is not None else None
    base = ScheduleSettings(**planned.model_dump()) if planned is not None else ScheduleSettings()
    return {"schedule": dataclasses.replace(base, **given)}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    try:
        overrides = schedule_overrides(args, config)
        options = RunOptions(stats_file=args.stats_file, labels_file=args.labels, max_events=args.max_events)
        serve_metrics(config.metrics_port)
        return run_generator(config, options, **overrides)
    except (ValueError, GeneratorError) as exc:
        print(f"generator: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
