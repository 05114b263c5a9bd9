"""Grafana dashboards as code: `python -m adnomaly.monitoring.dashboards [DIR]` writes them as JSON
(default `dashboards/`); a unit test fails when the committed files differ from what this produces.

Every panel query is checked against the metric catalog (unit test) and against a live Prometheus
scraping a local pipeline (integration test). The anomalies dashboard also reads the `anomalies` table
through a PostgreSQL data source (a table of open anomalies, open → resolved regions as annotations):
Prometheus counters carry no anomaly keys, and a per-key gauge would explode its cardinality. Its SQL is
run against a real `anomalies` table by tests/integration/test_dashboard_sql.py.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POSTGRES_TYPE = "grafana-postgresql-datasource"
POSTGRES = {"type": POSTGRES_TYPE, "uid": "${postgres}"}
WIDTH = 24
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    sql: str = ""  # set: a table panel on the PostgreSQL data source instead of Prometheus time series
    width: int = PANEL_WIDTH


@dataclass(frozen=True)
class Annotation:
    name: str
    color: str
    expr: str = ""  # PromQL: every step where it is non-zero is an event
    title: str = ""  # PromQL: title format, e.g. "{{type}} opened"
    tags: str = ""  # PromQL: comma-separated label names that become tags
    sql: str = ""  # instead of expr: rows of (time, timeend, text, tags) from PostgreSQL


def p(title: str, unit: str, *queries: tuple[str, str], description: str = "") -> Panel:
    return Panel(title, tuple(Query(expr, legend) for expr, legend in queries), unit, description)


def quantile(q: float, histogram: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[5m])))"


# fmt: off
OVERVIEW = (
    p("Events in (per second)", "ops",
      ("sum(rate(adnomaly_generator_events_total[1m]))", "generator"),
      ('sum(rate(adnomaly_ingest_events_total{result="accepted"}[1m]))', "ingest API")),
    p("Events processed (per second) by result", "ops",
      ("sum by (result) (rate(adnomaly_processor_events_total[1m]))", "{{result}}")),
    p("Latency p95: ingest request and processor batch (consumed → committed)", "s",
      (quantile(0.95, "adnomaly_ingest_request_seconds"), "ingest request"),
      (quantile(0.95, "adnomaly_processor_batch_seconds"), "processor batch")),
    p("Consumer lag by component and topic", "short",
      ("sum by (job, topic) (adnomaly_consumer_lag)", "{{job}} {{topic}}")),
    p("Dead-lettered events (per second) by reason", "ops",
      ("sum by (reason_code) (rate(adnomaly_dlq_events_total[5m]))", "{{reason_code}}")),
    p("Anomalies (per minute) by type and severity", "short",
      ("sum by (type, severity) (rate(adnomaly_anomalies_total[5m])) * 60", "{{type}} {{severity}}")),
    p("Components up", "short", ('up{job=~"adnomaly-.*"}', "{{job}}")),
)

SOURCES = (
    p("Generator: acknowledged events (per second) by kind", "ops",
      ("sum by (kind) (rate(adnomaly_generator_events_total[1m]))", "{{kind}}")),
    p("Generator: target vs achieved rate", "ops",
      ("sum(adnomaly_generator_target_events_per_second)", "target"),
      ("sum(adnomaly_generator_events_per_second)", "achieved")),
    p("Generator: schedule lag", "s", ("max(adnomaly_generator_schedule_lag_seconds)", "lag")),
    p("Generator: delivery failures and full buffers (per second)", "ops",
      ("sum(rate(adnomaly_generator_delivery_failures_total[5m]))", "delivery failures"),
      ("sum(rate(adnomaly_generator_buffer_full_total[5m]))", "buffer full")),
    p("Ingest API: requests (per second) by HTTP code", "reqps",
      ("sum by (code) (rate(adnomaly_ingest_requests_total[1m]))", "{{code}}")),
    p("Ingest API: events (per second) by result", "ops",
      ("sum by (result) (rate(adnomaly_ingest_events_total[1m]))", "{{result}}")),
    p("Ingest API: request latency", "s",
      (quantile(0.5, "adnomaly_ingest_request_seconds"), "p50"),
      (quantile(0.99, "adnomaly_ingest_request_seconds"), "p99")),
)

PROCESSOR = (
    p("Events (per second) by result", "ops",
      ("sum by (result) (rate(adnomaly_processor_events_total[1m]))", "{{result}}")),
    p("Batch latency (consumed → committed)", "s",
      (quantile(0.5, "adnomaly_processor_batch_seconds"), "p50"),
      (quantile(0.99, "adnomaly_processor_batch_seconds"), "p99")),
    p("Batch size", "short",
      ("sum(rate(adnomaly_processor_batch_size_sum[5m])) / sum(rate(adnomaly_processor_batch_size_count[5m]))",
       "mean"),
      (quantile(0.99, "adnomaly_processor_batch_size"), "p99")),
    p("Consumer lag by partition", "short",
      ('sum by (topic, partition) (adnomaly_consumer_lag{job="adnomaly-processor"})', "{{topic}}/{{partition}}")),
    p("Database write errors, retries and refused commits (per second)", "ops",
      ("sum(rate(adnomaly_processor_db_errors_total[5m]))", "write errors"),
      ("sum(rate(adnomaly_processor_db_retries_total[5m]))", "retries"),
      ("sum(rate(adnomaly_processor_commit_failures_total[5m]))", "commit failures")),
    p("Dead-lettered events (per second) by reason", "ops",
      ("sum by (reason_code) (rate(adnomaly_dlq_events_total[5m]))", "{{reason_code}}")),
)

SINKS = (
    p("Lake: events flushed (per second) by result", "ops",
      ("sum by (result) (rate(adnomaly_lake_events_total[1m]))", "{{result}}")),
    p("Lake: files and bytes written (per second)", "short",
      ("sum(rate(adnomaly_lake_files_total[5m]))", "files"),
      ("sum(rate(adnomaly_lake_written_bytes_total[5m]))", "bytes")),
    p("Lake: flush latency p95 and buffered events", "s",
      (quantile(0.95, "adnomaly_lake_flush_seconds"), "flush p95"),
      ("sum(adnomaly_lake_buffered_events)", "buffered")),
    p("Lake: upload errors, retries, refused commits (per second)", "ops",
      ("sum(rate(adnomaly_lake_upload_errors_total[5m]))", "upload errors"),
      ("sum(rate(adnomaly_lake_retries_total[5m]))", "retries"),
      ("sum(rate(adnomaly_lake_commit_failures_total[5m]))", "commit failures")),
    p("Feature sink: records and writes (per second)", "ops",
      ("sum(rate(adnomaly_feature_sink_records_total[1m]))", "records"),
      ("sum by (result) (rate(adnomaly_feature_sink_online_writes_total[1m]))", "online {{result}}"),
      ("sum(rate(adnomaly_feature_sink_history_rows_total[1m]))", "history rows")),
    p("Feature sink: batch latency p95", "s", (quantile(0.95, "adnomaly_feature_sink_batch_seconds"), "p95")),
    p("Feature sink: store errors (per second) by store", "ops",
      ("sum by (store) (rate(adnomaly_feature_sink_store_errors_total[5m]))", "{{store}}")),
    p("Sinks: consumer lag", "short",
      ('sum by (job, topic) (adnomaly_consumer_lag{job=~"adnomaly-(lake|feature)-sink"})', "{{job}} {{topic}}")),
    p("Online API: lookups (per second) by status", "reqps",
      ("sum by (status) (rate(adnomaly_serving_requests_total[1m]))", "{{status}}")),
    p("Online API: lookup latency p99", "s", (quantile(0.99, "adnomaly_serving_request_seconds"), "p99")),
)

DETECTION = (
    p("Anomalies (per minute) by type and severity", "short",
      ("sum by (type, severity) (rate(adnomaly_anomalies_total[5m])) * 60", "{{type}} {{severity}}")),
    p("Detector: feature records judged (per second)", "ops",
      ("sum(rate(adnomaly_detector_records_total[1m]))", "records")),
    p("Detector: batch latency p95 (judge + store + publish)", "s",
      (quantile(0.95, "adnomaly_detector_batch_seconds"), "p95")),
)

ANOMALIES_SQL = """SELECT detected_at AS "detected", type AS "detector", severity, \
(SELECT string_agg(key || '=' || value, ', ' ORDER BY key) FROM jsonb_each_text(dimensions)) AS "key", \
feature || '.' || metric AS "metric", observed, expected, score, reason, id::text AS "id"
FROM "$schema".anomalies WHERE status = 'open' ORDER BY detected_at DESC, id DESC LIMIT 200"""

ANOMALY_REGIONS_SQL = """SELECT detected_at AS "time", COALESCE(resolved_at, now()) AS "timeend", \
type || ' ' || severity || ': ' || \
(SELECT string_agg(key || '=' || value, ', ' ORDER BY key) FROM jsonb_each_text(dimensions)) || ' — ' || reason \
AS "text", type || ',' || status AS "tags"
FROM "$schema".anomalies WHERE detected_at <= $__timeTo() AND COALESCE(resolved_at, now()) >= $__timeFrom()
ORDER BY detected_at DESC LIMIT 500"""

ANOMALIES = (
    p("Anomalies opened (per minute) by detector and severity", "short",
      ("sum by (type, severity) (rate(adnomaly_anomalies_total[5m])) * 60", "{{type}} {{severity}}")),
    p("Anomalies resolved (per minute) by detector", "short",
      ("sum by (type) (rate(adnomaly_anomalies_resolved_total[5m])) * 60", "{{type}}")),
    p("Anomalies API and console: requests (per second) by route and status", "reqps",
      ("sum by (route, status) (rate(adnomaly_serving_anomaly_requests_total[5m]))", "{{route}} {{status}}")),
    p("Detector: feature records judged (per second)", "ops",
      ("sum(rate(adnomaly_detector_records_total[1m]))", "records")),
    Panel("Open anomalies (PostgreSQL: the anomalies table of schema $schema)", (), "short",
          "Every open anomaly with its key, newest first. Needs the PostgreSQL data source variable.",
          sql=ANOMALIES_SQL, width=WIDTH),
)

ANOMALY_ANNOTATIONS = (
    Annotation("Anomaly opened", "red", expr="sum by (type, severity) (increase(adnomaly_anomalies_total[1m])) > 0",
               title="{{type}} opened ({{severity}})", tags="type,severity"),
    Annotation("Anomaly resolved", "green", expr="sum by (type) (increase(adnomaly_anomalies_resolved_total[1m])) > 0",
               title="{{type}} resolved", tags="type"),
    Annotation("Anomalies open → resolved (PostgreSQL)", "orange", sql=ANOMALY_REGIONS_SQL),
)

OPERATOR = (
    p("Reconciles (per second) by result", "ops",
      ("sum by (result) (rate(adnomaly_operator_reconciles_total[5m]))", "{{result}}")),
    p("Reconcile duration", "s",
      (quantile(0.5, "adnomaly_operator_reconcile_seconds"), "p50"),
      (quantile(0.99, "adnomaly_operator_reconcile_seconds"), "p99")),
    p("Errors (per second) by kind", "ops",
      ("sum by (error) (rate(adnomaly_operator_errors_total[5m]))", "{{error}}")),
    p("API writes (per second) by verb", "ops",
      ("sum by (verb) (rate(adnomaly_operator_api_writes_total[5m]))", "{{verb}}")),
    p("Work queue depth", "short", ("max(adnomaly_operator_queue_depth)", "pipelines waiting")),
    p("Owned objects' watch events (per second): queued a pass, or only a new resourceVersion", "ops",
      ("sum by (queued) (rate(adnomaly_operator_owned_events_total[5m]))", "queued={{queued}}")),
)

# fmt: on

# file stem → (title, panels)
DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "adnomaly-overview": ("Adnomaly / Pipeline overview", OVERVIEW),
    "adnomaly-sources": ("Adnomaly / Sources (generator, ingest API)", SOURCES),
    "adnomaly-processor": ("Adnomaly / Processor", PROCESSOR),
    "adnomaly-sinks": ("Adnomaly / Sinks and online API", SINKS),
    "adnomaly-detection": ("Adnomaly / Detection", DETECTION),
    "adnomaly-operator": ("Adnomaly / Operator", OPERATOR),
    "adnomaly-anomalies": ("Adnomaly / Anomalies", ANOMALIES),
}
ANNOTATIONS: dict[str, tuple[Annotation, ...]] = {"adnomaly-anomalies": ANOMALY_ANNOTATIONS}
DEFAULT_SCHEMA = "p_clickstream"  # the pipeline's tables: schema p_<pipeline name, - as _>


def _layout(panels: Sequence[Panel]) -> list[tuple[int, int]]:
    """(x, y) of each panel, left to right in rows of WIDTH columns."""
    cells, x, y = [], 0, 0
    for panel in panels:
        if x + panel.width > WIDTH:
            x, y = 0, y + PANEL_HEIGHT
        cells.append((x, y))
        x += panel.width
    return cells


def _panel_json(index: int, panel: Panel, cell: tuple[int, int]) -> dict[str, Any]:
    common = {
        "id": index + 1, "title": panel.title, "description": panel.description,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": cell[0], "y": cell[1]},
    }  # fmt: skip
    if panel.sql:
        return {
            **common, "type": "table", "datasource": POSTGRES,
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "detected", "desc": True}]},
            "targets": [{"refId": "A", "datasource": POSTGRES, "format": "table", "rawQuery": True,
                         "editorMode": "code", "rawSql": panel.sql}],
        }  # fmt: skip
    return {
        **common,
        "type": "timeseries",
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend}
            for n, q in enumerate(panel.queries)
        ],
    }  # fmt: skip


def _annotation_json(a: Annotation) -> dict[str, Any]:
    if a.sql:
        return {"name": a.name, "enable": True, "iconColor": a.color, "datasource": POSTGRES,
                "target": {"refId": "A", "format": "table", "rawQuery": True, "editorMode": "code",
                           "rawSql": a.sql}}  # fmt: skip
    return {"name": a.name, "enable": True, "iconColor": a.color, "datasource": DATASOURCE, "expr": a.expr,
            "titleFormat": a.title, "tagKeys": a.tags, "useValueForTime": False, "step": "1m"}  # fmt: skip


def _templating(uses_sql: bool) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
    ]
    if uses_sql:
        variables += [
            {"name": "postgres", "type": "datasource", "query": POSTGRES_TYPE, "label": "PostgreSQL"},
            {"name": "schema", "type": "textbox", "label": "Pipeline schema (p_<pipeline>)",
             "query": DEFAULT_SCHEMA, "current": {"text": DEFAULT_SCHEMA, "value": DEFAULT_SCHEMA}},
        ]  # fmt: skip
    return variables


def dashboard(uid: str, title: str, panels: Sequence[Panel]) -> dict[str, Any]:
    annotations = ANNOTATIONS.get(uid, ())
    uses_sql = any(panel.sql for panel in panels) or any(a.sql for a in annotations)
    document: dict[str, Any] = {
        "uid": uid,
        "title": title,
        "tags": ["adnomaly"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _templating(uses_sql)},
        "panels": [
            _panel_json(i, panel, cell) for i, (panel, cell) in enumerate(zip(panels, _layout(panels), strict=True))
        ],
    }
    if annotations:
        document["annotations"] = {"list": [_annotation_json(a) for a in annotations]}
    return document


def all_dashboards() -> dict[str, dict[str, Any]]:
    return {uid: dashboard(uid, title, panels) for uid, (title, panels) in DASHBOARDS.items()}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def panel_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel or annotation title, PromQL expr) for every Prometheus query of a dashboard JSON document."""
    found = [(panel["title"], target["expr"]) for panel in document["panels"] for target in panel["targets"]
             if "expr" in target]  # fmt: skip
    annotations = document.get("annotations", {}).get("list", [])
    return found + [(f"annotation {a['name']}", a["expr"]) for a in annotations if "expr" in a]


def sql_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel or annotation title, SQL) for every PostgreSQL query of a dashboard JSON document."""
    found = [(panel["title"], target["rawSql"]) for panel in document["panels"] for target in panel["targets"]
             if "rawSql" in target]  # fmt: skip
    annotations = document.get("annotations", {}).get("list", [])
    return found + [(f"annotation {a['name']}", a["target"]["rawSql"]) for a in annotations if "target" in a]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.monitoring.dashboards", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=Path("dashboards"))
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    for uid, document in all_dashboards().items():
        (args.directory / f"{uid}.json").write_text(render(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
