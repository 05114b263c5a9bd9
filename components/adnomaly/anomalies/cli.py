"""`adnomaly anomalies`: the anomalies of a pipeline run by `adnomaly up`, read from its PostgreSQL.

It reads the table directly with the same query module as `GET /v1/anomalies`, rather than calling the
serving API: PostgreSQL runs for every local pipeline, while the serving component runs only when the
pipeline declares features (and listens on a port chosen per run). The state directory already names the
database (`services/postgres/port` and its password file), so nothing else has to be up or discovered.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from adnomaly.anomalies.filters import AnomalyFilters, BadFilter, resolve
from adnomaly.anomalies.models import AnomalyPage
from adnomaly.anomalies.store import UNAVAILABLE, AnomalyStore

FLAGS = {"status": "--open/--resolved", "detector": "--detector", "feature": "--feature", "key": "--key",
         "since": "--since", "until": "--until", "limit": "--limit"}  # fmt: skip


class CliError(Exception):
    pass


def pipeline_name(file: Path | None, state_dir: Path) -> str:
    """The pipeline of `-f FILE`, else the only one the state directory holds."""
    if file is not None:
        from adnomaly.spec import SpecError, load_pipeline

        try:
            return load_pipeline(file).name
        except (SpecError, OSError) as exc:
            raise CliError(f"cannot read the pipeline: {exc}") from None
    found = sorted(p.name for p in (state_dir / "pipelines").glob("*") if p.is_dir())
    if len(found) != 1:
        known = ", ".join(found) or "none"
        raise CliError(f"name the pipeline with -f PIPELINE.yaml (pipelines in {state_dir}: {known})")
    return found[0]


def local_dsn(state_dir: Path) -> str:
    from adnomaly.services.postgres import PostgresServer

    directory = state_dir / "services" / "postgres"
    if not (directory / "port").exists():
        raise CliError(f"no local PostgreSQL in {state_dir} (run the pipeline with `adnomaly up -f FILE` first)")
    return PostgresServer(directory).dsn


def filters_from(args: argparse.Namespace) -> AnomalyFilters:
    status = "open" if args.open else "resolved" if args.resolved else None
    values = {"status": status, "detector": args.detector, "feature": args.feature, "key": args.key or [],
              "since": args.since, "until": args.until, "limit": args.limit}  # fmt: skip
    try:
        return AnomalyFilters(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "filters"
        raise CliError(f"{FLAGS.get(field, field)}: {error['msg']}") from None


def render_table(page: AnomalyPage, pipeline: str, console: Console) -> None:
    if not page.anomalies:
        console.print(f"no anomalies in pipeline {pipeline} match")
        return
    table = Table(title=f"anomalies of pipeline {pipeline} (newest first)")
    for column in ("detected", "status", "severity", "detector", "metric", "key", "observed", "expected", "score"):
        table.add_column(column)
    for a in page.anomalies:
        table.add_row(
            a.detected_at.strftime("%Y-%m-%d %H:%M:%S"), a.status, a.severity, a.detector, f"{a.feature}.{a.metric}",
            ", ".join(f"{k}={v}" for k, v in a.key.items()), f"{a.observed:.4g}",
            "—" if a.expected is None else f"{a.expected:.4g}", f"{a.score:.2f}",
        )  # fmt: skip
    console.print(table)
    if page.next_cursor:
        console.print(f"(more: raise --limit above {len(page.anomalies)} or narrow --since)")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    from adnomaly.plan import db_schema_name

    console = console or Console()
    try:
        pipeline = pipeline_name(args.file, args.state_dir)
        query = resolve(filters_from(args), datetime.now(UTC))
        store = AnomalyStore(local_dsn(args.state_dir), db_schema_name(pipeline), pipeline, "adnomaly-cli")
        try:
            page = store.page(query)
        finally:
            store.close()
    except BadFilter as exc:
        console.print(f"{FLAGS.get(exc.field, exc.field)}: {exc.detail}")
        return 2
    except CliError as exc:
        console.print(str(exc))
        return 2
    except UNAVAILABLE as exc:
        console.print(f"the local PostgreSQL does not answer (is `adnomaly up` running?): {type(exc).__name__}")
        return 1
    if args.output == "json":
        sys.stdout.write(json.dumps([a.model_dump(mode="json") for a in page.anomalies], indent=2) + "\n")
    else:
        render_table(page, pipeline, console)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = subparsers.add_parser("anomalies", help="anomalies of a local pipeline, newest first",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    cmd.add_argument("-f", "--file", type=Path, default=None, help="the Pipeline YAML (default: the only one run)")
    status = cmd.add_mutually_exclusive_group()
    status.add_argument("--open", action="store_true", help="only open anomalies")
    status.add_argument("--resolved", action="store_true", help="only resolved anomalies")
    cmd.add_argument("--since", metavar="WHEN", help="detected at or after: ISO 8601 or a duration ago (1h, 7d)")
    cmd.add_argument("--until", metavar="WHEN", help="detected before: ISO 8601 or a duration ago")
    cmd.add_argument("--detector", help="the detector's name in the spec")
    cmd.add_argument("--feature", help="the feature judged")
    cmd.add_argument("--key", action="append", metavar="DIM:VALUE", help="dimension value, repeatable (geo:US)")
    cmd.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    cmd.add_argument("--state-dir", type=Path, default=Path(".adnomaly"), metavar="DIR",
                     help="the state directory `adnomaly up` uses (default .adnomaly/)")  # fmt: skip
    cmd.set_defaults(func=run)
