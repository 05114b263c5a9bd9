"""No secret in logs or component config files: the real components, started by the local backend
(`LocalPipeline.start_component`, as `adnomaly up` does) against real services that all need credentials
(Kafka with SASL/SCRAM per component and ACLs, PostgreSQL, MinIO, Redis, ingest tokens), driven through
traffic and failure paths (wrong token, PostgreSQL down -> retry logs, Redis down -> 503 and a warning,
Kafka authentication failure).
Every secret value, and its URL-encoded form, must be absent from every log and config file; the only
files holding a secret are the 0600 secret stores.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from adnomaly.config import SecretEnv
from adnomaly.kafka_acls import NoKafkaAccess, component_acls
from adnomaly.kafka_client import TopicSettings, create_acls, ensure_topics, upsert_scram_user
from adnomaly.local.state import open_state_dir
from adnomaly.local.up import COMPONENT_ORDER, LocalPipeline, Services
from adnomaly.processor.store import count_stored
from adnomaly.services.base import wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.minio import MinioServer
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer
from adnomaly.spec import parse_pipeline

REPO = Path(__file__).resolve().parents[2]
SUFFIX = uuid.uuid4().hex[:8]
# Secrets we choose carry characters that URL encoding changes, so both forms are looked for.
INGEST_TOKEN = f"in+gest/{SUFFIX}=tok"
WRONG_TOKEN = f"wrong+token/{SUFFIX}"
KAFKA_PASSWORDS = {name: f"kp+{name}/{SUFFIX}:@%=" for name in COMPONENT_ORDER}
WRONG_KAFKA_PASSWORD = f"bad+kafka/{SUFFIX}@="


def _forms(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


def _pipeline_spec(name: str) -> dict:
    return {"kind": "Pipeline", "metadata": {"name": name}, "spec": {
        "events": {"schema": "clickstream"},
        "source": {"generator": {"eventsPerSecond": 20, "seed": 3, "invalidRate": 0.05},
                   "ingest": {"replicas": 1}},
        "kafka": {"topics": {"raw": {"partitions": 2, "retention": "1d"}}},
        "features": [{"name": "traffic", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "1m"},
                      "metrics": [{"name": "n", "agg": "count"}]}],
        "detection": {"detectors": [{"name": "many", "feature": "traffic", "metric": "n",
                                     "threshold": {"warningAbove": 1e9, "criticalAbove": 2e9}}]},
    }}  # fmt: skip


@pytest.fixture
def minio(tmp_path: Path) -> Iterator[MinioServer]:
    server = MinioServer(tmp_path / "minio")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_no_secret_reaches_logs_or_config_files(
    tmp_path: Path, make_postgres: Callable[..., PostgresServer], make_redis: Callable[..., RedisServer],
    minio: MinioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = open_state_dir(tmp_path / "state")
    name = f"leak-{SUFFIX}"
    token_path = state.root / "pipelines" / name / "secrets" / "ingest-token"
    token_path.parent.mkdir(parents=True, exist_ok=True)
    token_path.write_text(INGEST_TOKEN)
    token_path.chmod(0o600)
    kafka = KafkaBroker(state.service_dir("kafka"), sasl=True)
    postgres, redis = make_postgres(), make_redis()
    kafka.start()
    extra_logs: list[Path] = []
    local: LocalPipeline | None = None
    try:
        local = LocalPipeline(parse_pipeline(_pipeline_spec(name)), state, Services(kafka, postgres, minio, redis))
        assert local.state.secret(name, "ingest-token") == INGEST_TOKEN
        admin = kafka.admin_client_settings()
        topics = {t.name: TopicSettings(t.partitions) for t in local.plan.topics.values()}
        ensure_topics(kafka.bootstrap_servers, topics, client=admin)
        for component, planned in local.plan.components.items():
            try:
                rules = component_acls(planned.config)
            except NoKafkaAccess:
                continue
            upsert_scram_user(kafka.bootstrap_servers, component, KAFKA_PASSWORDS[component], client=admin)
            create_acls(kafka.bootstrap_servers, component, rules, client=admin)

        # Start every planned component the way `adnomaly up` does, each with its own Kafka login.
        for component in COMPONENT_ORDER:
            if component not in local.plan.components:
                continue
            monkeypatch.setenv(SecretEnv.KAFKA_USERNAME, component)
            monkeypatch.setenv(SecretEnv.KAFKA_PASSWORD, KAFKA_PASSWORDS[component])
            local.start_component(component)
            if component == "processor":
                wait_until(local.schema_ready, 90, "the processor's migrations")
        monkeypatch.delenv(SecretEnv.KAFKA_USERNAME)
        monkeypatch.delenv(SecretEnv.KAFKA_PASSWORD)
        local.wait_http_ready("ingest", local.ingest_port)

        # Traffic: good and bad tokens, valid and invalid events.
        url = f"http://127.0.0.1:{local.ingest_port}/v1/events"
        event = {"timestamp": "2026-01-01T00:00:00Z", "user_id_hash": "u", "ad_id": "a", "campaign_id": "c",
                 "geo": "US", "platform": "web", "user_agent": "x", "CPC": 0.1, "CTR": 0.1, "conversion": 0,
                 "bounce_rate": 0.1}  # fmt: skip
        with httpx.Client(timeout=30) as http:
            body = b"\n".join([msgspec.json.encode(event)] * 20 + [b"{broken"])
            ok = http.post(url, content=body, headers={"Authorization": f"Bearer {INGEST_TOKEN}",
                                                       "Content-Type": "application/x-ndjson"})  # fmt: skip
            assert ok.status_code == 202, ok.text
            # Every component really works over SASL with its own user: ingest's events and the generator's
            # reach PostgreSQL through the processor.
            schema = local.processor_section().db_schema
            wait_until(lambda: count_stored(postgres.dsn, schema) >= 40, 60, "events stored through SASL Kafka")
            for header in (f"Bearer {WRONG_TOKEN}", f"Basic {INGEST_TOKEN}", WRONG_TOKEN):
                denied = http.post(url, content=body, headers={"Authorization": header,
                                                               "Content-Type": "application/x-ndjson"})  # fmt: skip
                assert denied.status_code in (401, 403)
                assert INGEST_TOKEN not in denied.text and WRONG_TOKEN not in denied.text

            # PostgreSQL down while events keep coming: the processor, detector and feature sink retry and log;
            # the anomalies API answers 503 and logs it (the exception's type, never the DSN).
            serving = local.plan.components["serving"].config.serving
            assert serving is not None
            anomalies_url = f"http://127.0.0.1:{serving.port}/v1/anomalies?status=open"
            assert http.get(anomalies_url).status_code == 200
            postgres.kill()
            assert http.get(anomalies_url).status_code == 503
            for _ in range(3):
                assert http.post(url, content=body, headers={"Authorization": f"Bearer {INGEST_TOKEN}",
                                                             "Content-Type": "application/x-ndjson"}).status_code == 202
                time.sleep(2)
            processor_log = local.components["processor"].log_path
            wait_until(lambda: processor_log.stat().st_size > 0 and _mentions_db_trouble(processor_log.read_text()),
                       40, "the processor logging the database outage")  # fmt: skip
            postgres.start()
            wait_until(lambda: http.get(anomalies_url).status_code == 200, 30, "the anomalies API back after it")
            assert "anomalies query failed" in local.components["serving"].log_path.read_text()

            # Redis down: the online API answers 503 and logs the failure (redis-py's message, not the URL).
            lookup = f"http://127.0.0.1:{serving.port}/v1/features/traffic?geo=US"
            assert http.get(lookup).status_code in (200, 404)
            redis.kill()
            assert http.get(lookup).status_code == 503
            serving_log = local.components["serving"].log_path
            wait_until(lambda: "Redis lookup failed" in serving_log.read_text(), 20, "the Redis outage logged")
            redis.start()

        # A Kafka authentication failure: a second processor with a wrong password.
        bad_log = tmp_path / "processor-bad-kafka-password.log"
        extra_logs.append(bad_log)
        config_path = tmp_path / "processor-bad.json"  # the same config, without the metrics port taken
        processor_config = local.plan.components["processor"].config
        config_path.write_text(processor_config.model_copy(update={"metrics_port": 0}).to_json())
        env = {**os.environ, **local.secrets_env(), SecretEnv.KAFKA_USERNAME: "processor",
               SecretEnv.KAFKA_PASSWORD: WRONG_KAFKA_PASSWORD}  # fmt: skip
        with bad_log.open("wb") as log:
            bad = subprocess.Popen([sys.executable, "-m", "adnomaly.processor", "--config", str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)  # fmt: skip
        try:
            wait_until(lambda: "authentication" in bad_log.read_text(errors="replace").lower()
                       or bad.poll() is not None, 40, "the Kafka authentication failure logged")  # fmt: skip
        finally:
            bad.terminate()
            bad.wait(timeout=60)
        assert "authentication" in bad_log.read_text(errors="replace").lower()
        time.sleep(3)  # let the components log their recovery
    finally:
        if local is not None:
            for component in reversed(COMPONENT_ORDER):
                local.stop_component(component)
        kafka.stop()

    generator_log = (state.component_dir(name, "generator") / "generator.log").read_text()
    assert "events produced" in generator_log and " 0 failed, 0 undelivered" in generator_log, generator_log
    secrets = {
        "ingest token": INGEST_TOKEN, "wrong ingest token": WRONG_TOKEN,
        "postgres password": postgres.password, "redis password": redis.password,
        "minio secret key": minio.secret_key, "minio access key": minio.access_key,
        "kafka admin password": kafka.admin_password,
        "wrong kafka password": WRONG_KAFKA_PASSWORD,
        **{f"kafka password of {c}": p for c, p in KAFKA_PASSWORDS.items()},
    }  # fmt: skip
    logs = [p for p in (state.root / "pipelines").rglob("*.log*") if p.is_file()] + extra_logs
    logs += [p for p in (state.service_dir("kafka") / "logs").rglob("*") if p.is_file()]
    assert len([p for p in logs if p.stat().st_size > 0]) >= 7, logs
    _assert_absent(secrets, logs)
    # Files the local backend wrote for components (config.json, stats, labels, ...): no secret at all.
    component_files = [p for p in (state.root / "pipelines" / name).rglob("*") if p.is_file()]
    configs = [p for p in component_files if p.name == "config.json"]
    assert len(configs) == len(local.plan.components) if local else False
    holders = [p for p in component_files if _holds_any(p, secrets)]
    assert holders == [token_path], holders  # only the secret store, and it is private
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    kafka_holders = [p for p in kafka.state_dir.rglob("*") if p.is_file() and "data" not in p.relative_to(
        kafka.state_dir).parts and _holds_any(p, secrets)]  # fmt: skip
    assert kafka_holders == [kafka.admin_password_file] and stat.S_IMODE(kafka_holders[0].stat().st_mode) == 0o600


def _mentions_db_trouble(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("connection refused", "postgres", "database", "retry", "retrying"))


def _holds_any(path: Path, secrets: dict[str, str]) -> bool:
    data = path.read_bytes()
    return any(form.encode() in data for secret in secrets.values() for form in _forms(secret))


def _assert_absent(secrets: dict[str, str], paths: list[Path]) -> None:
    leaks = []
    for path in paths:
        data = path.read_bytes()
        for what, secret in secrets.items():
            for form in _forms(secret):
                if form.encode() in data:
                    leaks.append(f"{what} ({'raw' if form == secret else 'URL-encoded'}) in {path}")
    assert not leaks, "\n".join(leaks)
