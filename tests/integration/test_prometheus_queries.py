"""A real Prometheus scrapes a real local pipeline; every dashboard panel and alert expression is evaluated
through its HTTP API, and anything that returns no series fails the test.

Series of components the local pipeline does not run (operator, feature sink, online API, detector) cannot
be checked live: they are listed as the declared exception, and the unit tests still check their names
against the metric catalog (tests/unit/test_dashboards.py, tests/unit/test_alert_rules.py).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from adnomaly.local.prometheus import PrometheusServer, prometheus_server
from adnomaly.local.state import open_state_dir
from adnomaly.local.status import run_status
from adnomaly.local.up import COMPONENT_ORDER, LocalPipeline, local_services
from adnomaly.monitoring.catalog import owners, registered_metrics
from adnomaly.monitoring.dashboards import all_dashboards, panel_queries
from adnomaly.monitoring.promql import metric_names, selectors
from adnomaly.monitoring.rules import alert_expressions
from adnomaly.plan import managed_stores
from adnomaly.services.base import wait_until
from adnomaly.services.prometheus import find_prometheus
from adnomaly.spec import parse_pipeline
from rich.console import Console

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(find_prometheus() is None, reason="prometheus missing: apt-get install prometheus"),
]

SCRAPE_S = 30.0
PIPELINE = {
    "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "promcheck"},
    "spec": {"events": {"schema": "clickstream"},
             "source": {"generator": {"eventsPerSecond": 100, "invalidRate": 0.05}}},
}  # fmt: skip


def clickstream_event(n: int) -> dict[str, object]:
    return {
        "timestamp": datetime.now(UTC).isoformat(), "user_id_hash": f"u{n}", "ad_id": "ad1", "campaign_id": "c1",
        "geo": "US", "platform": "web", "user_agent": "test", "CPC": 0.5, "CTR": 0.1, "conversion": 0,
        "bounce_rate": 0.3,
    }  # fmt: skip


@dataclasses.dataclass
class Scraped:
    prometheus: PrometheusServer
    components: frozenset[str]
    state_dir: Path


@pytest.fixture(scope="module")
def scraped() -> Iterator[Scraped]:
    root = Path(tempfile.mkdtemp(prefix="adnomaly-prom-"))
    root.chmod(0o755)  # PostgreSQL runs as `postgres` when we are root
    state = open_state_dir(root)
    pipeline = parse_pipeline(PIPELINE)
    try:
        with local_services(state, managed_stores(pipeline)) as services:
            local = LocalPipeline(pipeline, state, services)
            lake = local.plan.components.get("lake-sink")
            if lake is not None and lake.config.lake is not None:  # flush within the scrape window
                fast = lake.config.lake.model_copy(update={"flush_interval_s": 5.0})
                local.plan.components["lake-sink"] = dataclasses.replace(
                    lake, config=lake.config.model_copy(update={"lake": fast})
                )
            local.create_topics()
            targets = {name: c.config.metrics_port or 0 for name, c in local.plan.components.items()}
            server = prometheus_server(targets, state.service_dir("prometheus"), interval_s=2.0)
            assert server is not None
            server.start()
            try:
                for name in COMPONENT_ORDER:
                    if name in local.plan.components:
                        local.start_component(name)
                        if name == "processor":
                            wait_until(local.schema_ready, 60, "the processor's database migrations")
                local.wait_http_ready("ingest", local.ingest_port)
                send_to_ingest(local.ingest_port, state.secret(pipeline.name, "ingest-token"))
                time.sleep(SCRAPE_S)
                yield Scraped(server, frozenset(local.plan.components), root)
            finally:
                for name in reversed(COMPONENT_ORDER):
                    local.stop_component(name, timeout=30)
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def send_to_ingest(port: int, token: str) -> None:
    lines = [orjson.dumps(clickstream_event(n)) for n in range(20)] + [b'{"not": "a click"}']
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/events", content=b"\n".join(lines),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}, timeout=30,
    )  # fmt: skip
    assert response.status_code < 500, response.text


def live_components(expr: str, scraped: Scraped, series_owners: dict[str, set[str]]) -> bool:
    """Whether every series in `expr` comes from a component the local pipeline runs."""
    return all(name == "up" or series_owners.get(name, set()) & scraped.components for name in metric_names(expr))


def test_every_dashboard_panel_returns_series(scraped: Scraped) -> None:
    series_owners = owners(registered_metrics())
    empty, skipped = [], []
    for uid, document in all_dashboards().items():
        for title, expr in panel_queries(document):
            if not live_components(expr, scraped, series_owners):
                skipped.append(f"{uid} / {title}")
                continue
            if not scraped.prometheus.query(expr):
                empty.append(f"{uid} / {title}: {expr}")
    print(f"not run locally (checked against the catalog only): {skipped}")
    assert not empty, "panels with no series:\n" + "\n".join(empty)
    assert len(skipped) < sum(len(panel_queries(d)) for d in all_dashboards().values()) / 2


def test_every_alert_expression_evaluates_and_its_series_exist(scraped: Scraped) -> None:
    series_owners = owners(registered_metrics())
    missing, skipped = [], []
    for alert, expr in alert_expressions().items():
        scraped.prometheus.query(expr)  # raises on a PromQL error
        for selector in selectors(expr):
            if not live_components(selector.metric, scraped, series_owners):
                skipped.append(f"{alert}: {selector.metric}")
                continue
            if not scraped.prometheus.query(selector.metric):
                missing.append(f"{alert}: {selector.metric}")
            for label, _op, _value in selector.matchers:
                result = scraped.prometheus.query(f"count by ({label}) ({selector.metric})")
                if not any(row["metric"].get(label) for row in result):
                    missing.append(f"{alert}: {selector.metric} has no label {label}")
    print(f"not run locally (checked against the catalog only): {skipped}")
    assert not missing, "\n".join(missing)
    checked = {alert for alert in alert_expressions() if not any(s.startswith(f"{alert}:") for s in skipped)}
    assert {"AdnomalyComponentDown", "AdnomalyConsumerLagGrowing", "AdnomalyNoEvents"} <= checked


def test_prometheus_scrapes_every_component(scraped: Scraped) -> None:
    up = {row["metric"]["job"]: row["value"][1] for row in scraped.prometheus.query('up{job=~"adnomaly-.*"}')}
    assert up == {f"adnomaly-{name}": "1" for name in scraped.components}


def test_a_typo_returns_no_series(scraped: Scraped) -> None:
    assert scraped.prometheus.query("sum by (result) (rate(adnomaly_procesor_events_total[1m]))") == []
    with pytest.raises(ValueError):
        scraped.prometheus.query("sum(rate(adnomaly_processor_events_total[1m])")


def test_status_shows_the_running_pipelines_numbers(scraped: Scraped) -> None:
    report = run_status(scraped.state_dir, Console(quiet=True))
    assert report["prometheus"] == scraped.prometheus.url
    pipeline = report["promcheck"]
    assert isinstance(pipeline, dict)
    assert pipeline["components"] == {name: True for name in scraped.components}
    numbers = {label: int(value.replace(",", "")) for label, value in pipeline["numbers"].items()}
    assert numbers["events generated"] > 1000
    assert numbers["events accepted by the ingest API"] == 20
    assert numbers["lines rejected by the ingest API"] == 1
    assert numbers["events stored"] > 1000 and numbers["dead-lettered"] > 0
    assert "anomalies" not in numbers  # no detector in this pipeline: no row rather than a made-up zero
