"""`adnomaly status`: the key numbers of a running local pipeline, read from its components' /metrics.

It needs nothing but the state directory `adnomaly up` uses: each component's rendered config there names
its metrics port, and a Prometheus (Alertmanager) started by `adnomaly up` leaves its URL in
`services/prometheus/url` (`services/alertmanager/url`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# (row label, component, series, label filter) — summed over every series that matches the filter
KEY_NUMBERS: tuple[tuple[str, str, str, Mapping[str, str]], ...] = (
    ("events generated", "generator", "adnomaly_generator_events_total", {}),
    ("events accepted by the ingest API", "ingest", "adnomaly_ingest_events_total", {"result": "accepted"}),
    ("lines rejected by the ingest API", "ingest", "adnomaly_ingest_events_total", {"result": "rejected"}),
    ("events stored", "processor", "adnomaly_processor_events_total", {"result": "stored"}),
    ("duplicates skipped", "processor", "adnomaly_processor_events_total", {"result": "duplicate"}),
    ("dead-lettered", "processor", "adnomaly_dlq_events_total", {}),
    ("processor lag (messages)", "processor", "adnomaly_consumer_lag", {}),
    ("database write errors", "processor", "adnomaly_processor_db_errors_total", {}),
    ("events written to the lake", "lake-sink", "adnomaly_lake_events_total", {"result": "written"}),
    ("lake sink lag (messages)", "lake-sink", "adnomaly_consumer_lag", {}),
    ("feature records stored", "feature-sink", "adnomaly_feature_sink_records_total", {}),
    ("anomalies", "detector", "adnomaly_anomalies_total", {}),
)


@dataclass
class ComponentStatus:
    name: str
    url: str
    up: bool = False
    samples: Samples = field(default_factory=dict)


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, labels: Mapping[str, str]) -> float | None:
    """Sum of the series named `name` whose labels include `labels`; None when there is none."""
    wanted = set(labels.items())
    values = [value for (series, have), value in samples.items() if series == name and wanted <= have]
    return sum(values) if values else None


def metrics_endpoints(state_dir: Path) -> dict[str, dict[str, str]]:
    """pipeline → component → metrics URL, from the configs `adnomaly up` rendered into the state dir."""
    found: dict[str, dict[str, str]] = {}
    for config_path in sorted((state_dir / "pipelines").glob("*/*/config.json")):
        config = json.loads(config_path.read_text())
        component = config.get("component") or config_path.parent.name
        port = config.get("metrics_port")
        if component == "ingest" and not port and config.get("ingest"):
            port = config["ingest"].get("port")  # the ingest API serves /metrics itself
        if port:
            pipeline = config.get("pipeline") or config_path.parent.parent.name
            found.setdefault(pipeline, {})[component] = f"http://127.0.0.1:{port}/metrics"
    return found


def scrape(name: str, url: str, timeout: float = 2.0) -> ComponentStatus:
    status = ComponentStatus(name, url)
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return status
    if response.status_code == 200:
        status.up = True
        status.samples = parse_samples(response.text)
    return status


def key_numbers(components: Mapping[str, ComponentStatus]) -> list[tuple[str, str]]:
    """(label, value) rows for the components that are up and expose the series (pure)."""
    rows = []
    for label, component, series, labels in KEY_NUMBERS:
        status = components.get(component)
        if status is None or not status.up:
            continue
        value = total(status.samples, series, labels)
        if value is not None:
            rows.append((label, f"{value:,.0f}"))
    return rows


def service_url(state_dir: Path, service: str) -> str | None:
    """The URL a Prometheus or Alertmanager started by `adnomaly up` left in its state dir, if it answers."""
    path = state_dir / "services" / service / "url"
    if not path.exists():
        return None
    url = path.read_text().strip()
    try:
        return url if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200 else None
    except httpx.HTTPError:
        return None


def run_status(state_dir: Path, console: Console | None = None) -> dict[str, object]:
    console = console or Console()
    report: dict[str, object] = {}
    endpoints = metrics_endpoints(state_dir)
    if not endpoints:
        console.print(f"no pipeline in {state_dir} (start one with `adnomaly up -f PIPELINE.yaml`)")
    for pipeline, urls in endpoints.items():
        components = {name: scrape(name, url) for name, url in urls.items()}
        table = Table(title=f"pipeline {pipeline}")
        table.add_column("component")
        table.add_column("state")
        for name, status in components.items():
            table.add_row(name, "[green]up[/]" if status.up else "[red]not reachable[/]")
        numbers = key_numbers(components)
        for label, value in numbers:
            table.add_row(label, value)
        console.print(table)
        report[pipeline] = {
            "components": {name: status.up for name, status in components.items()},
            "numbers": dict(numbers),
        }
    for service, title in (("prometheus", "Prometheus"), ("alertmanager", "Alertmanager")):
        url = service_url(state_dir, service)
        if url:
            console.print(f"{title}: {url}")
            report[service] = url
    return report


def _status(args: argparse.Namespace) -> int:
    report = run_status(args.state_dir, Console(quiet=args.json))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    status = subparsers.add_parser("status", help="key numbers of a running local pipeline")
    status.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".adnomaly"),
        metavar="DIR",
        help="the state directory `adnomaly up` uses (default .adnomaly/)",
    )
    status.add_argument("--json", action="store_true", help="print the numbers as JSON")
    status.set_defaults(func=_status)
