"""Dashboards are generated from code, and every query names series some component really registers."""

from __future__ import annotations

import json

import pytest
from adnomaly.monitoring.catalog import registered_metrics
from adnomaly.monitoring.dashboards import all_dashboards, main, panel_queries, render, sql_queries
from adnomaly.monitoring.promql import metric_names, selectors

from tests.conftest import REPO_ROOT

DASHBOARD_DIR = REPO_ROOT / "dashboards"


def known_series() -> set[str]:
    names = {"up"}
    for series in registered_metrics().values():
        names |= series
    return names


def test_committed_dashboards_are_the_generated_ones() -> None:
    generated = all_dashboards()
    committed = {path.stem for path in DASHBOARD_DIR.glob("*.json")}
    assert committed == set(generated), "run: python -m adnomaly.monitoring.dashboards"
    for uid, document in generated.items():
        assert (DASHBOARD_DIR / f"{uid}.json").read_text() == render(document), (
            f"{uid}.json is stale; run: python -m adnomaly.monitoring.dashboards"
        )


def test_generator_writes_every_dashboard(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert main([str(tmp_path)]) == 0
    for uid in all_dashboards():
        document = json.loads((tmp_path / f"{uid}.json").read_text())
        assert document["uid"] == uid and document["panels"]


@pytest.mark.parametrize("uid", sorted(all_dashboards()))
def test_every_panel_query_uses_registered_series(uid: str) -> None:
    known = known_series()
    for title, expr in panel_queries(all_dashboards()[uid]):
        names = metric_names(expr)
        assert names, f"{uid} / {title}: no series in {expr!r}"
        assert names <= known, f"{uid} / {title}: unknown series {sorted(names - known)} in {expr!r}"


def test_required_dashboards_exist() -> None:
    uids = set(all_dashboards())
    assert {"adnomaly-overview", "adnomaly-operator", "adnomaly-processor"} <= uids
    overview = " ".join(expr for _, expr in panel_queries(all_dashboards()["adnomaly-overview"]))
    for needed in (
        "adnomaly_consumer_lag",
        "adnomaly_dlq_events_total",
        "adnomaly_anomalies_total",
        "adnomaly_processor_batch_seconds_bucket",
    ):
        assert needed in overview


def test_panels_do_not_overlap_and_have_unique_ids() -> None:
    for uid, document in all_dashboards().items():
        ids = [panel["id"] for panel in document["panels"]]
        assert len(ids) == len(set(ids)), uid
        cells = [(panel["gridPos"]["x"], panel["gridPos"]["y"]) for panel in document["panels"]]
        assert len(cells) == len(set(cells)), uid


def test_the_catalog_catches_a_typo() -> None:
    assert metric_names("sum(rate(adnomaly_procesor_events_total[1m]))") - known_series() == {
        "adnomaly_procesor_events_total"
    }


def test_selectors_skip_label_lists_and_strings() -> None:
    found = selectors('sum by (job) (rate(adnomaly_dlq_events_total{reason_code="up"}[5m])) / up{job="x"}')
    assert [s.metric for s in found] == ["adnomaly_dlq_events_total", "up"]
    assert found[0].matchers == (("reason_code", "=", "up"),)
    assert found[0].text == 'adnomaly_dlq_events_total{reason_code="up"}'


def test_no_per_user_labels_and_naming_conventions() -> None:
    for component, series in registered_metrics().items():
        for name in series:
            assert name.startswith("adnomaly_"), (component, name)
            assert not name.endswith("_milliseconds_bucket"), (component, name)


def test_the_anomalies_dashboard_marks_opens_and_resolves_and_lists_open_anomalies() -> None:
    document = all_dashboards()["adnomaly-anomalies"]
    annotations = {a["name"]: a for a in document["annotations"]["list"]}
    opened, resolved = annotations["Anomaly opened"], annotations["Anomaly resolved"]
    assert "adnomaly_anomalies_total" in opened["expr"] and "adnomaly_anomalies_resolved_total" in resolved["expr"]
    known = known_series()
    for name in ("adnomaly_anomalies_total", "adnomaly_anomalies_resolved_total"):  # what the detector exports
        assert name in registered_metrics(["detector"])["detector"] and name in known
    tables = [panel for panel in document["panels"] if panel["type"] == "table"]
    assert len(tables) == 1 and tables[0]["datasource"]["type"] == "grafana-postgresql-datasource"
    queries = dict(sql_queries(document))
    assert "status = 'open'" in queries[tables[0]["title"]]
    assert all('FROM "$schema".anomalies' in sql for sql in queries.values()), queries
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["postgres"]["query"] == "grafana-postgresql-datasource"
    assert variables["schema"]["type"] == "textbox"
    assert "postgres" not in {v["name"] for v in all_dashboards()["adnomaly-overview"]["templating"]["list"]}
