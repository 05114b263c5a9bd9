"""The suite's verdict, pure: what was produced against what PostgreSQL, the lake and the feature stores hold.

Events: every produced id must be stored in PostgreSQL exactly once and be in exactly one lake file row
(files are taken once each by name: a file rewritten after a crash replaces itself). Ids whose outcome the
producer could not know (`ambiguous`) may be present or absent, but never twice.

Features: windows recomputed from the lake's events (the reference windowing of `adnomaly.detection`) must
equal the windows the pipeline stored in PostgreSQL (every window the pipeline emitted, and every window
that ended long enough before the last event that it must have been emitted), and each entity's latest
window in Redis must be its latest window in PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adnomaly.detection.windowing import FeatureWindows
from adnomaly.features.record import FeatureRecord, entity_key
from adnomaly.sinks.features.online import epoch_ms
from adnomaly.spec import FeatureSpec

WindowKey = tuple[str, str, int]  # (feature, entity key, window end in epoch ms)


@dataclass(frozen=True)
class WindowValue:
    event_count: int
    metrics: Mapping[str, float | None]

    def matches(self, other: WindowValue) -> bool:
        if self.event_count != other.event_count or set(self.metrics) != set(other.metrics):
            return False
        return all(_close(self.metrics[name], other.metrics[name]) for name in self.metrics)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass
class EventReport:
    events: int  # ids the producers know were taken
    lost: list[str] = field(default_factory=list)  # produced, but missing from PostgreSQL or the lake
    duplicated: list[str] = field(default_factory=list)  # more than once in PostgreSQL or in the lake
    missing_in_postgres: int = 0
    missing_in_lake: int = 0
    unexpected: int = 0  # stored but never produced (nor ambiguous): ids from nowhere
    ambiguous_found: int = 0


def lake_id_counts(files: Mapping[str, Iterable[str]]) -> Counter[str]:
    """How many rows each id has over the lake's files (path → the ids in that file; one entry per path)."""
    counts: Counter[str] = Counter()
    for ids in files.values():
        counts.update(ids)
    return counts


def check_events(
    produced: set[str], ambiguous: set[str], stored: Counter[str], lake: Counter[str]
) -> EventReport:
    report = EventReport(events=len(produced))
    missing_pg = produced - stored.keys()
    missing_lake = produced - lake.keys()
    report.missing_in_postgres, report.missing_in_lake = len(missing_pg), len(missing_lake)
    report.lost = sorted(missing_pg | missing_lake)
    report.duplicated = sorted({i for i, n in stored.items() if n > 1} | {i for i, n in lake.items() if n > 1})
    known = produced | ambiguous
    report.unexpected = len((stored.keys() | lake.keys()) - known)
    report.ambiguous_found = len(ambiguous & (stored.keys() | lake.keys()))
    return report


# -- features -----------------------------------------------------------------------------------------------


def recompute(
    features: list[FeatureSpec], events: Iterable[tuple[int, Mapping[str, Any]]]
) -> dict[WindowKey, WindowValue]:
    """Every window of every feature over `events` ((time µs, fields)), all counted: nothing is late."""
    ordered = sorted(events, key=lambda e: e[0])
    out: dict[WindowKey, WindowValue] = {}
    for feature in features:
        windows = FeatureWindows(feature)
        windows.lateness_us = 1 << 62  # the whole stream is known: no window fires before the end
        records: list[FeatureRecord] = []
        for t_us, event in ordered:
            records.extend(windows.add(t_us, event))
        records.extend(windows.flush())
        for record in records:
            key = (record.feature, entity_key(record.dimensions, feature.dimensions), epoch_ms(record.window_end))
            out[key] = WindowValue(record.event_count, record.metrics)
    return out


@dataclass
class FeatureReport:
    windows_stored: int = 0
    windows_expected: int = 0  # recomputed windows that must have been emitted (ended before the cutoff)
    mismatched: list[str] = field(default_factory=list)  # stored, but not what the lake says
    missing: list[str] = field(default_factory=list)  # expected, but not stored
    redis_entities: int = 0
    redis_mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.redis_mismatched)


def check_features(
    expected: Mapping[WindowKey, WindowValue],
    stored: Mapping[WindowKey, WindowValue],
    online: Mapping[tuple[str, str], tuple[int, WindowValue]],
    cutoff_ms: int,
) -> FeatureReport:
    """`stored`: PostgreSQL's windows; `online`: Redis, (feature, entity) → (window end ms, value);
    `cutoff_ms`: windows ending at or before it must have been emitted by now."""
    report = FeatureReport(windows_stored=len(stored), redis_entities=len(online))
    for key, value in stored.items():
        want = expected.get(key)
        if want is None or not want.matches(value):
            report.mismatched.append(f"{key}: stored {value}, lake says {want}")
    due = [key for key in expected if key[2] <= cutoff_ms]
    report.windows_expected = len(due)
    report.missing = [str(key) for key in due if key not in stored]
    latest: dict[tuple[str, str], int] = {}
    for feature, entity, end in stored:
        latest[(feature, entity)] = max(end, latest.get((feature, entity), end))
    for (feature, entity), (end, value) in online.items():
        pg = stored.get((feature, entity, end))
        if end != latest.get((feature, entity)) or pg is None or not pg.matches(value):
            report.redis_mismatched.append(f"{feature}/{entity}: redis window end {end} {value}, postgres {pg}")
    for entity in set(latest) - set(online):
        report.redis_mismatched.append(f"{entity[0]}/{entity[1]}: in postgres, not in redis")
    return report
