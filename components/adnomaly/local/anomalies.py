"""The pipeline's anomalies as `adnomaly up` shows them: the newest few, and how many exist and are resolved.

Read through the same store as `GET /v1/anomalies` and `adnomaly anomalies` (adnomaly.anomalies.store), once
per refresh: a count and a handful of rows, cheap at any table size. The table appears when the detector
first starts; until then there are none. The formatting is pure and kept here, so the live view's table and
its printed lines say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from adnomaly.anomalies.filters import AnomalyQuery
from adnomaly.anomalies.models import AnomalyOut
from adnomaly.anomalies.store import AnomalyStore

RECENT = 5  # anomalies the live view lists


@dataclass(frozen=True)
class AnomalyCounts:
    total: int = 0  # anomalies ever opened
    resolved: int = 0


def read_anomalies(store: AnomalyStore, limit: int = RECENT) -> tuple[AnomalyCounts, list[AnomalyOut]]:
    """The pipeline's counts and its `limit` newest anomalies (by detection time)."""
    total, resolved = store.totals()
    return AnomalyCounts(total, resolved), store.page(AnomalyQuery(limit=limit)).anomalies


def key_text(anomaly: AnomalyOut) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(anomaly.key.items())) or "(all)"


def describe(anomaly: AnomalyOut) -> str:
    """One line: which detector, which key, how bad, observed against expected, the score."""
    expected = "" if anomaly.expected is None else f" vs expected {anomaly.expected:.4g}"
    return (
        f"{anomaly.detector} ({anomaly.method}) {key_text(anomaly)}: {anomaly.severity}, "
        f"observed {anomaly.observed:.4g}{expected}, score {anomaly.score:.3f}"
    )


def transitions(seen: dict[str, str], anomalies: list[AnomalyOut]) -> list[str]:
    """Lines for the anomalies that opened or resolved since `seen` (id → status), which is updated. An
    anomaly first seen already resolved gets both lines."""
    lines = []
    for anomaly in sorted(anomalies, key=lambda a: (a.detected_at, a.id)):
        before = seen.get(anomaly.id)
        if before is None:
            lines.append(f"anomaly opened: {describe(anomaly)}")
        if anomaly.status == "resolved" and before != "resolved":
            lines.append(f"anomaly resolved: {anomaly.detector} {key_text(anomaly)}")
        seen[anomaly.id] = anomaly.status
    return lines
