"""Anomaly → Alertmanager alert (API v2 `postableAlert`). Pure.

Labels identify the anomaly for routing, grouping, silencing and inhibition: alertname, pipeline, detector
(its name in the spec), feature, metric, key (the dimension values as one stable string) and severity. They
are fixed when the anomaly is first seen: an escalation from warning to critical does not change them, so
Alertmanager (which identifies an alert by its label set) keeps one alert per anomaly. Annotations carry
what a person reads: a summary, observed/expected/score, the reason, and the anomaly's id for look-ups.

Times are the anomaly's event times (the ends of its opening and resolving windows), never later than
`now`: Alertmanager refuses alerts that end before they start, and a start in the future would do that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adnomaly.detection.anomaly import Anomaly


def dimension_key(dimensions: dict[str, str]) -> str:
    """The dimension values as one stable string, e.g. `geo=US,platform=ios` (sorted by dimension)."""
    return ",".join(f"{name}={dimensions[name]}" for name in sorted(dimensions))


def labels(anomaly: Anomaly, alertname: str) -> dict[str, str]:
    return {
        "alertname": alertname,
        "pipeline": anomaly.pipeline,
        "detector": anomaly.type,
        "feature": anomaly.feature,
        "metric": anomaly.metric,
        "key": dimension_key(anomaly.dimensions),
        "severity": anomaly.severity,
    }


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def annotations(anomaly: Anomaly) -> dict[str, str]:
    key = dimension_key(anomaly.dimensions) or "(all)"
    summary = (
        f"{anomaly.type}: {anomaly.metric} of {anomaly.feature} for {key} is {_number(anomaly.observed)}"
        f" (expected {_number(anomaly.expected)})"
    )
    out = {
        "summary": summary,
        "observed": _number(anomaly.observed),
        "expected": _number(anomaly.expected),
        "score": _number(anomaly.score),
        "reason": anomaly.reason,
        "method": anomaly.detector,
        "anomaly_id": anomaly.id,
        "window": f"{rfc3339(anomaly.window_start)}/{rfc3339(anomaly.window_end)}",
    }
    return {name: value for name, value in out.items() if value}


def rfc3339(moment: datetime) -> str:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def postable(
    labels: dict[str, str], annotations: dict[str, str], starts_at: datetime, ends_at: datetime | None,
    now: datetime, generator_url: str | None = None,
) -> dict[str, Any]:
    """One alert for `POST /api/v2/alerts`: without `endsAt` while firing (Alertmanager then resolves it by
    itself after `resolve_timeout` unless it is re-sent), with it once resolved."""
    alert: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations)}
    end = min(ends_at, now) if ends_at is not None else None
    alert["startsAt"] = rfc3339(min(starts_at, end if end is not None else now))
    if end is not None:
        alert["endsAt"] = rfc3339(end)
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert
