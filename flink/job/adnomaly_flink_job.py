"""The Adnomaly features job: run the Flink SQL that `adnomaly.features.sql.compile_job` rendered.

This file runs in the Flink job's own environment (apache-flink and its pins, flink/requirements.lock),
never in the main package's. It decides nothing: the rendered config (JSON) carries the Flink options, the
table/view DDL and the INSERT statements; this sets the options, runs the DDL and submits every INSERT as
one statement set, i.e. one Flink job.

Locally: `python adnomaly_flink_job.py --config job.json` runs it in PyFlink's embedded mini-cluster (the
Kafka connector jar comes in through `pipeline.jars`, set with `--set`). On Kubernetes the Flink operator
starts it through `org.apache.flink.client.python.PythonDriver -py /opt/adnomaly/adnomaly_flink_job.py
--config …` in application mode; the connector jar is in the image's lib/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

JOB_FORMAT = 1
CONFIG_ENV = "ADNOMALY_FLINK_JOB"


def load_job(path: str) -> dict[str, Any]:
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the job config {path}: {exc}") from None
    if not isinstance(job, dict) or job.get("format") != JOB_FORMAT:
        raise SystemExit(f"{path}: not a features job config of format {JOB_FORMAT}")
    for key in ("configuration", "statements", "inserts"):
        if key not in job:
            raise SystemExit(f"{path}: missing `{key}`")
    if not job["inserts"]:
        raise SystemExit(f"{path}: no INSERT statements: nothing to run")
    return job


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def run(job: dict[str, Any], overrides: dict[str, str], wait: bool) -> None:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in {**job["configuration"], **overrides}.items():
        conf.set_string(key, str(value))
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    t_env = TableEnvironment.create(settings)
    for statement in job["statements"]:
        t_env.execute_sql(statement)
    statement_set = t_env.create_statement_set()
    for insert in job["inserts"]:
        statement_set.add_insert_sql(insert)
    result = statement_set.execute()
    client = result.get_job_client()
    job_id = client.get_job_id() if client is not None else None
    print(f"adnomaly-features: submitted {job.get('job_name', '?')} as Flink job {job_id}", flush=True)
    if wait:
        result.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=os.environ.get(CONFIG_ENV), help=f"job config JSON (or ${CONFIG_ENV})"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a Flink option"
    )
    parser.add_argument(
        "--detached", action="store_true", help="return once submitted (do not wait for the job)"
    )
    args = parser.parse_args(argv)
    if not args.config:
        parser.error(f"no job config: pass --config FILE or set {CONFIG_ENV}")
    run(load_job(args.config), parse_overrides(args.set), wait=not args.detached)
    return 0


if __name__ == "__main__":
    sys.exit(main())
