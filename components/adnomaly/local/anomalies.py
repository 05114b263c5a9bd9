"""The pipeline's anomalies as `adnomaly up` shows them: the newest few, and how many exist and are resolved.

Read from where they are true, the `anomalies` table the detector writes (adnomaly.detector.store) in the
pipeline's PostgreSQL schema, once per refresh: a count and a handful of rows, cheap at any table size
(`anomalies_detected_idx`). The table appears when the detector first starts; until then there are none.
Formatting is pure and kept here, so the live view and its plain-text lines say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

RECENT = 5  # rows the live view lists


@dataclass(frozen=True)
class AnomalyRow:
    id: str
    type: str  # the detector's name in the spec
    detector: str  # its method (auto, threshold, ...)
    severity: str
    status: str  # open | resolved
    dimensions: dict[str, str]
    observed: float
    expected: float | None
    score: float
    detected_at: datetime
    resolved_at: datetime | None

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.dimensions.items())) or "(all)"

    def describe(self) -> str:
        """One line: which detector, which key, how bad, observed against expected, the score."""
        expected = "" if self.expected is None else f" vs expected {self.expected:.4g}"
        return (
            f"{self.type} ({self.detector}) {self.key}: {self.severity}, observed {self.observed:.4g}{expected}, "
            f"score {self.score:.3f}"
        )


@dataclass(frozen=True)
class AnomalyCounts:
    total: int = 0  # rows in the table: anomalies ever opened
    resolved: int = 0


_COLUMNS = ("id", "type", "detector", "severity", "status", "dimensions", "observed", "expected", "score",
            "detected_at", "resolved_at")  # fmt: skip


def read_anomalies(dsn: str, db_schema: str, limit: int = RECENT) -> tuple[AnomalyCounts, list[AnomalyRow]]:
    """The counts and the `limit` newest anomalies (by detection time) of the pipeline in `db_schema`."""
    table = sql.Identifier(db_schema, "anomalies")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{db_schema}".anomalies',)).fetchone()
        if not (exists and exists[0]):
            return AnomalyCounts(), []
        counts = conn.execute(
            sql.SQL("SELECT count(*), count(*) FILTER (WHERE status = 'resolved') FROM {}").format(table)
        ).fetchone()
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY detected_at DESC, id LIMIT %s").format(
                sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), table
            ),
            (limit,),
        ).fetchall()
    total, resolved = counts if counts else (0, 0)
    return AnomalyCounts(int(total), int(resolved)), [_row(row) for row in rows]


def _row(row: tuple[Any, ...]) -> AnomalyRow:
    values = dict(zip(_COLUMNS, row, strict=True))
    return AnomalyRow(**{**values, "id": str(values["id"]), "dimensions": dict(values["dimensions"] or {})})


def transitions(seen: dict[str, str], rows: list[AnomalyRow]) -> list[str]:
    """Lines for the anomalies in `rows` that opened or resolved since `seen` (id → status), which is updated.
    An anomaly first seen already resolved gets both lines."""
    lines = []
    for row in sorted(rows, key=lambda r: (r.detected_at, r.id)):
        before = seen.get(row.id)
        if before is None:
            lines.append(f"anomaly opened: {row.describe()}")
        if row.status == "resolved" and before != "resolved":
            lines.append(f"anomaly resolved: {row.type} {row.key}")
        seen[row.id] = row.status
    return lines
