"""Anomalies, feature history and stored events in a real PostgreSQL, written by the components' own stores,
and the serving component as its own process reading them (for the API and console tests)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from adnomaly.config import ComponentConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.detection.anomaly import Anomaly, anomaly_id
from adnomaly.detector import store as anomaly_store
from adnomaly.features.record import entity_key
from adnomaly.plan import events_config
from adnomaly.processor.migrate import migrate
from adnomaly.services.base import ManagedProcess, free_port
from adnomaly.sinks.config import SERVING_SECTION, FeatureView, ServingConfig, render_config
from adnomaly.sinks.features.batch import HistoryRow
from adnomaly.sinks.features.stores import HistoryStore
from adnomaly.sinks.sections import feast_project
from adnomaly.spec import parse_pipeline

PIPELINE = "console-itest"
TRAFFIC = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg"], ttl_s=3600)
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def before_now(span: timedelta) -> str:
    """A duration filter (`since=…s`) meaning NOW - span, whenever it is sent: NOW (and SEEDED) are fixed at import,
    which is collection time, many minutes before a test late in a long session runs."""
    return f"{int((span + (datetime.now(UTC) - NOW)).total_seconds())}s"


def anomaly(detector: str, dims: dict[str, str], minutes_ago: int, *, status: str = "open",
            severity: str = "warning", feature: str = "traffic", observed: float = 0.3) -> Anomaly:  # fmt: skip
    end = NOW - timedelta(minutes=minutes_ago)
    return Anomaly(
        id=anomaly_id(PIPELINE, detector, dims, end), pipeline=PIPELINE, type=detector, detector="auto",
        severity=severity, status=status, feature=feature, metric="ctr_avg", dimensions=dims,  # type: ignore[arg-type]
        window_start=end - timedelta(minutes=5), window_end=end, observed=observed, expected=0.05, score=0.95,
        statistic=8.0, reason=f"ctr_avg {observed} far above 0.05", context={"event_count": 80}, detected_at=end,
        resolved_at=end + timedelta(minutes=6) if status == "resolved" else None,
    )  # fmt: skip


SEEDED = [
    anomaly("ctr-spike", {"geo": "US", "platform": "ios"}, 10, severity="critical", observed=0.42),
    anomaly("ctr-spike", {"geo": "DE", "platform": "web"}, 40, status="resolved"),
    anomaly("ctr-spike", {"geo": "FR", "platform": "android"}, 90),
    anomaly("high-bounce", {"geo": "US", "platform": "web"}, 20),
    anomaly("high-bounce", {"geo": "US", "platform": "ios"}, 200, status="resolved"),
    anomaly("latency", {"region": "eu"}, 30, feature="probes"),
]


def seed(dsn: str, db_schema: str) -> None:
    """(Idempotent) The anomalies above, 90 minutes of one-minute windows for US/ios (a spike at the first anomaly), and
    360 events stored over the last two minutes (the console's throughput: 72 per minute over 5 minutes)."""
    with psycopg.connect(dsn) as conn:
        anomaly_store.ensure_table(conn, db_schema)
        anomaly_store.write(conn, db_schema, SEEDED)
        migrate(conn, db_schema)
        with conn.transaction():
            conn.execute(
                f'INSERT INTO "{db_schema}".events (event_id, event_time, payload) '
                "SELECT 'e' || g, now() - g * interval '1 second' / 3, '{}'::jsonb FROM generate_series(1, 360) g "
                "ON CONFLICT (event_id) DO UPDATE SET event_time = EXCLUDED.event_time"
            )
    history = HistoryStore(dsn, db_schema)
    history.ensure_table()
    us_ios = {"geo": "US", "platform": "ios"}
    spike = SEEDED[0].window_end
    rows = []
    for minute in range(-80, 10):
        end = spike + timedelta(minutes=minute)
        value = 0.42 if minute == 0 else 0.3 if minute == 1 else 0.05 + 0.004 * (minute % 4)
        rows.append(HistoryRow("traffic", entity_key(us_ios, TRAFFIC.dimensions), us_ios, end - timedelta(minutes=5),
                               end, {"ctr_avg": value}, 80))  # fmt: skip
    history.write(rows)
    history.close()


class LiveServing:
    """`python -m adnomaly.serving --config PATH` with the DSN and the Redis URL in its environment only."""

    def __init__(self, workdir: Path, dsn: str, redis_url: str, db_schema: str) -> None:
        self.port = free_port()
        pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": PIPELINE},
                                   "spec": {"events": {"schema": "clickstream"}}})  # fmt: skip
        config = ComponentConfig(
            pipeline=PIPELINE, component="serving",
            kafka=KafkaConfig(bootstrap_servers="127.0.0.1:1",
                              topics=TopicNames(raw="r", dlq="d", features="f", anomalies="a")),
            events=events_config(pipeline), metrics_port=None,
        )  # fmt: skip
        section = ServingConfig(host="127.0.0.1", port=self.port, feast_project=feast_project(PIPELINE),
                                features=[TRAFFIC], db_schema=db_schema)  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "serving.json"
        self.config_path.write_text(render_config(config, SERVING_SECTION, section))
        self.process = ManagedProcess(
            name="serving", argv=[sys.executable, "-m", "adnomaly.serving", "--config", str(self.config_path)],
            log_path=workdir / "serving.log",
            env={**os.environ, SecretEnv.REDIS_URL: redis_url, SecretEnv.POSTGRES_DSN: dsn},
        )  # fmt: skip
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServing:
        self.process.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.check_alive()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serving did not come up:\n{self.log}")

    @property
    def log(self) -> str:
        return self.process.log_path.read_text() if self.process.log_path.exists() else ""

    def stop(self) -> None:
        self.process.stop(timeout=10)


@contextmanager
def seeded_serving(workdir: Path, dsn: str, redis_url: str, db_schema: str) -> Iterator[LiveServing]:
    """The serving component on a schema seeded with SEEDED's anomalies; stopped afterwards."""
    seed(dsn, db_schema)
    live = LiveServing(workdir, dsn, redis_url, db_schema).start()
    try:
        yield live
    finally:
        live.stop()
