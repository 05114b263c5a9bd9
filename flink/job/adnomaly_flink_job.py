"""The Adnomaly features job: run the Flink SQL that `adnomaly.features.sql.compile_job` rendered.

This file runs in the Flink job's own environment (apache-flink and its pins, flink/requirements.lock),
never in the main package's. It decides nothing: the rendered config (JSON) carries the Flink options, the
table/view DDL and the INSERT statements; this sets the options, runs the DDL and submits every INSERT as
one statement set, i.e. one Flink job.

Kafka credentials never travel in the job config: at start the job reads ADNOMALY_KAFKA_USERNAME, _PASSWORD,
_SASL_MECHANISM, _SECURITY_PROTOCOL and _CA_FILE from its own environment (the same variables and rules as
`adnomaly.kafka_client.security_settings`; a unit test holds the two to the same decisions) and sets the
matching connector options (`properties.security.protocol`, `properties.sasl.mechanism`,
`properties.sasl.jaas.config` with the SCRAM/PLAIN login module, a PEM truststore) on the job's Kafka tables
with `ALTER TABLE ... SET`, which is never printed; an error that might quote it is redacted.

Locally: `python adnomaly_flink_job.py --config job.json` runs it in PyFlink's embedded mini-cluster (the
Kafka connector jar comes in through `pipeline.jars`, set with `--set`). On Kubernetes the Flink operator
starts it through `org.apache.flink.client.python.PythonDriver -py /opt/adnomaly/job/adnomaly_flink_job.py
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

ENV_USERNAME = "ADNOMALY_KAFKA_USERNAME"
ENV_PASSWORD = "ADNOMALY_KAFKA_PASSWORD"
ENV_MECHANISM = "ADNOMALY_KAFKA_SASL_MECHANISM"
ENV_PROTOCOL = "ADNOMALY_KAFKA_SECURITY_PROTOCOL"
ENV_CA_FILE = "ADNOMALY_KAFKA_CA_FILE"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# flink-sql-connector-kafka (the jar used locally and in the image) shades kafka-clients under this prefix;
# a JAAS config naming the unshaded login module fails with "No LoginModule found".
KAFKA_CLASS_PREFIX = "org.apache.flink.kafka.shaded."
LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
REDACTED = "[redacted]"


def _env(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value and value.strip() else None


def kafka_security_options(env: dict[str, str], configured: str = "PLAINTEXT") -> dict[str, str]:
    """Kafka connector options (Java client names under `properties.`) from the environment; the same
    decisions as adnomaly.kafka_client.security_settings. Errors name variables, never secret values."""
    username, password = _env(env, ENV_USERNAME), _env(env, ENV_PASSWORD)
    mechanism, ca_file, explicit = _env(env, ENV_MECHANISM), _env(env, ENV_CA_FILE), _env(env, ENV_PROTOCOL)
    if (username is None) != (password is None):
        raise SystemExit(f"set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither")
    protocol = (explicit or configured).strip().upper()
    if explicit is None and username is not None and not protocol.startswith("SASL_"):
        protocol = f"SASL_{protocol}"
    if protocol not in SECURITY_PROTOCOLS:
        raise SystemExit(f"the Kafka security protocol must be one of {', '.join(SECURITY_PROTOCOLS)}: {protocol!r}")
    sasl = protocol.startswith("SASL_")
    if sasl != (username is not None):
        raise SystemExit(f"security protocol {protocol} and {ENV_USERNAME}/{ENV_PASSWORD} do not agree")
    if mechanism is not None and not sasl:
        raise SystemExit(f"{ENV_MECHANISM} is set but the security protocol {protocol} is not SASL")
    if ca_file is not None and protocol not in ("SSL", "SASL_SSL"):
        raise SystemExit(f"{ENV_CA_FILE} is set but the security protocol {protocol} does not use TLS")
    options = {"properties.security.protocol": protocol}
    if sasl:
        assert username is not None and password is not None
        chosen = (mechanism or "SCRAM-SHA-512").strip().upper()
        if chosen not in LOGIN_MODULES:
            raise SystemExit(f"{ENV_MECHANISM} must be one of {', '.join(LOGIN_MODULES)}, got {chosen!r}")
        options["properties.sasl.mechanism"] = chosen
        options["properties.sasl.jaas.config"] = (
            f"{KAFKA_CLASS_PREFIX}{LOGIN_MODULES[chosen]} required "
            f'username="{_jaas_quote(username.strip())}" password="{_jaas_quote(password)}";'
        )
    if ca_file is not None:
        options["properties.ssl.truststore.type"] = "PEM"
        options["properties.ssl.truststore.location"] = ca_file.strip()
    return options


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def alter_table_sql(table: str, options: dict[str, str]) -> str:
    """`ALTER TABLE t SET (...)`: holds the password; execute it, never print it."""
    pairs = ", ".join(f"{_sql_literal(k)} = {_sql_literal(v)}" for k, v in options.items())
    return f"ALTER TABLE `{table.replace('`', '``')}` SET ({pairs})"


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret (and its JAAS/SQL-escaped forms) replaced by [redacted]."""
    for secret in secrets:
        for form in {secret, _jaas_quote(secret), _sql_literal(secret)[1:-1], _sql_literal(_jaas_quote(secret))[1:-1]}:
            if form:
                text = text.replace(form, REDACTED)
    return text


def apply_kafka_security(t_env: Any, job: dict[str, Any], env: dict[str, str]) -> None:
    """Set the security options on every Kafka table of `job` (no-op on PLAINTEXT without credentials)."""
    options = kafka_security_options(env, job.get("kafka_security_protocol", "PLAINTEXT"))
    if options == {"properties.security.protocol": "PLAINTEXT"}:
        return
    secrets = [value for value in (_env(env, ENV_PASSWORD),) if value]
    for table in job.get("kafka_tables", []):
        try:
            t_env.execute_sql(alter_table_sql(table, options))
        except Exception as exc:  # Flink/py4j errors may quote the statement: never let the password out
            detail = redact(str(exc), secrets)
            raise SystemExit(f"cannot set the Kafka security options of table {table}: {detail}") from None
    shown = {k: (REDACTED if k.endswith("jaas.config") else v) for k, v in options.items()}
    print(f"adnomaly-features: Kafka security on {len(job.get('kafka_tables', []))} tables: {shown}", flush=True)


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


def _statement_set(job: dict[str, Any], overrides: dict[str, str]) -> Any:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in {**job["configuration"], **overrides}.items():
        conf.set_string(key, str(value))
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    t_env = TableEnvironment.create(settings)
    for statement in job["statements"]:
        t_env.execute_sql(statement)
    apply_kafka_security(t_env, job, dict(os.environ))
    statement_set = t_env.create_statement_set()
    for insert in job["inserts"]:
        statement_set.add_insert_sql(insert)
    return statement_set


def explain(job: dict[str, Any], overrides: dict[str, str]) -> str:
    """The planner's plan of the job with each operator's changelog mode (nothing is submitted)."""
    from pyflink.table import ExplainDetail

    return str(_statement_set(job, overrides).explain(ExplainDetail.CHANGELOG_MODE))


def run(job: dict[str, Any], overrides: dict[str, str], wait: bool) -> None:
    result = _statement_set(job, overrides).execute()
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
    parser.add_argument(
        "--explain", action="store_true", help="print the plan with changelog modes instead of running the job"
    )
    args = parser.parse_args(argv)
    if not args.config:
        parser.error(f"no job config: pass --config FILE or set {CONFIG_ENV}")
    if args.explain:
        print(explain(load_job(args.config), parse_overrides(args.set)))
        return 0
    run(load_job(args.config), parse_overrides(args.set), wait=not args.detached)
    return 0


if __name__ == "__main__":
    sys.exit(main())
