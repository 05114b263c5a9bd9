"""`adnomaly feast -f pipeline.yaml -o DIR`: write the pipeline's Feast repository (`adnomaly.feast.repo`).

By default the repository reads the stores of the local pipeline (`adnomaly up`'s state directory: its
Redis and PostgreSQL ports and passwords, so feature_store.yaml is written 0600); `--env` writes `${VAR}`
placeholders instead (ADNOMALY_FEAST_REDIS as Feast's Redis connection string, ADNOMALY_FEAST_PG_HOST,
_PG_PORT, _PG_DATABASE, _PG_USER, _PG_PASSWORD), as the operator's ConfigMap does. `--apply` then runs
`feast apply` in DIR with Feast's own environment (installed once, `adnomaly.services.feast`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from adnomaly.feast.repo import ENV_CONNECTIONS, FEATURE_STORE_YAML, FeastConnections, feast_repo
from adnomaly.plan import db_schema_name
from adnomaly.spec import SpecError, load_pipeline


def local_connections(state_dir: Path) -> FeastConnections:
    """The connections of the local pipeline services under `state_dir` (what `adnomaly up` started)."""
    from adnomaly.services.postgres import DATABASE, SUPERUSER

    services = state_dir / "services"
    try:
        redis_port = (services / "redis" / "port").read_text().strip()
        redis_password = (services / "redis" / "redis.password").read_text().strip()
        pg_port = (services / "postgres" / "port").read_text().strip()
        pg_password = (services / "postgres" / "superuser.password").read_text().strip()
    except OSError as exc:
        raise SystemExit(
            f"no local Redis/PostgreSQL in {state_dir} ({exc.strerror}: {exc.filename}): run `adnomaly up` first, "
            "or pass --env for a repository that reads its connections from environment variables"
        ) from None
    return FeastConnections(
        redis=f"127.0.0.1:{redis_port},password={redis_password}", pg_host="127.0.0.1", pg_port=pg_port,
        pg_database=DATABASE, pg_user=SUPERUSER, pg_password=pg_password,
    )  # fmt: skip


def write_repo(files: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    for name, text in files.items():
        path = out / name
        path.unlink(missing_ok=True)
        mode = 0o600 if name == FEATURE_STORE_YAML else 0o644  # it may hold passwords
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def feast_apply(out: Path) -> None:
    """`feast apply` in `out`, with Feast's own environment."""
    from adnomaly.services.feast import ensure_feast

    python = ensure_feast()
    done = subprocess.run([str(python), "-m", "feast.cli.cli", "apply"], cwd=out, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"feast apply failed in {out}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = load_pipeline(args.file)
    except (OSError, SpecError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if not pipeline.spec.features:
        print(f"{args.file}: Pipeline {pipeline.name} declares no features: no Feast repository", file=sys.stderr)
        return 1
    connections = ENV_CONNECTIONS if args.env else local_connections(args.state_dir.resolve())
    files = feast_repo(pipeline, db_schema_name(pipeline.name), connections)
    write_repo(files, args.output)
    print(f"Feast repository of {pipeline.name} in {args.output}: {', '.join(sorted(files))}")
    if args.apply:
        feast_apply(args.output)
        print(f"feast apply: registry in {args.output / 'data'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "feast", help="write the pipeline's Feast repository (read its features with Feast itself)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("-f", "--file", type=Path, required=True, help="the Pipeline YAML")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the repository's directory")
    parser.add_argument("--state-dir", type=Path, default=Path(".adnomaly"), help="adnomaly up's state directory")
    parser.add_argument("--env", action="store_true", help="connections as ${VAR} placeholders, not local values")
    parser.add_argument("--apply", action="store_true", help="run `feast apply` (Feast's own venv)")
    parser.set_defaults(func=run)
