"""A pure Python reference of the features job's windowing (same semantics as `adnomaly.features.sql`).

Windows are event-time `TUMBLE` or `HOP` windows [start, end) aligned to the epoch; an event at t belongs
to every window with start <= t < end. Metrics: count, sum, avg, min, max, ratio = sum(num)/sum(den)
(None when the denominator sums to 0), pNN = exact percentile with linear interpolation between closest
ranks (numpy's default, as Flink's PERCENTILE). Booleans count as 1/0; a window is emitted once the
watermark (newest event time minus `allowedLateness`) passes its end, and an event whose every window has
already fired is dropped, as in Flink. Only valid events (the processor's codec accepts them) are counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adnomaly.durations import parse_duration
from adnomaly.features.record import FeatureRecord
from adnomaly.spec import FeatureSpec, MetricSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default `linear` method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def aggregate(metric: MetricSpec, events: list[Mapping[str, Any]]) -> float | None:
    """One metric over the events of one window and key."""
    if metric.agg == "count":
        return float(len(events))
    if metric.agg == "ratio":
        assert metric.numerator is not None and metric.denominator is not None
        num = sum(_number(e.get(metric.numerator)) or 0.0 for e in events)
        den = sum(_number(e.get(metric.denominator)) or 0.0 for e in events)
        return num / den if den else None
    assert metric.field is not None
    values = [v for v in (_number(e.get(metric.field)) for e in events) if v is not None]
    if not values:
        return None
    if metric.agg == "sum":
        return sum(values)
    if metric.agg == "avg":
        return sum(values) / len(values)
    if metric.agg == "min":
        return min(values)
    if metric.agg == "max":
        return max(values)
    return percentile(values, int(metric.agg[1:]) / 100.0)


def window_starts(t_us: int, size_us: int, slide_us: int) -> range:
    """Starts of every window [s, s + size) holding t (s a multiple of slide)."""
    last = t_us - t_us % slide_us
    first = last - size_us + slide_us
    return range(first, last + 1, slide_us)


def _to_dt(t_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=t_us)


@dataclass
class FeatureWindows:
    """Incremental windowing of one feature: `add(t_us, event)`, then `fired()` / `flush()` records."""

    feature: FeatureSpec
    size_us: int = field(init=False)
    slide_us: int = field(init=False)
    lateness_us: int = field(init=False)
    watermark_us: int = field(init=False, default=-(1 << 62))
    _open: dict[int, dict[tuple[str, ...], list[Mapping[str, Any]]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        window = self.feature.window
        self.size_us = int(parse_duration(window.size) * _US)
        self.slide_us = int(parse_duration(window.slide) * _US) if window.slide else self.size_us
        self.lateness_us = int(parse_duration(self.feature.allowed_lateness) * _US)

    def add(self, t_us: int, event: Mapping[str, Any]) -> list[FeatureRecord]:
        """Count one valid event; return the windows that fire because the watermark moved."""
        dims = self.feature.dimensions
        if any(event.get(d) is None for d in dims):
            return []
        key = tuple(_dimension_text(event[d]) for d in dims)
        for start in window_starts(t_us, self.size_us, self.slide_us):
            if start + self.size_us - 1 <= self.watermark_us:
                continue  # this window has fired: the event is late for it
            self._open.setdefault(start, {}).setdefault(key, []).append(event)
        self.watermark_us = max(self.watermark_us, t_us - self.lateness_us)
        return self.fired()

    def fired(self) -> list[FeatureRecord]:
        ready = sorted(s for s in self._open if s + self.size_us - 1 <= self.watermark_us)
        return [record for start in ready for record in self._emit(start)]

    def flush(self) -> list[FeatureRecord]:
        """Every window still open (end of input)."""
        return [record for start in sorted(self._open) for record in self._emit(start)]

    def _emit(self, start: int) -> Iterator[FeatureRecord]:
        groups = self._open.pop(start)
        for key in sorted(groups):
            events = groups[key]
            yield FeatureRecord(
                feature=self.feature.name, dimensions=dict(zip(self.feature.dimensions, key, strict=True)),
                window_start=_to_dt(start), window_end=_to_dt(start + self.size_us),
                metrics={m.name: aggregate(m, events) for m in self.feature.metrics}, event_count=len(events),
            )  # fmt: skip


def _dimension_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def window_all(features: Iterable[FeatureSpec], events: Iterable[tuple[int, Mapping[str, Any]]]) -> list[FeatureRecord]:
    """Every feature's windows over an in-order or late stream of (time_us, event), in firing order."""
    windows = [FeatureWindows(f) for f in features]
    out: list[FeatureRecord] = []
    for t_us, event in events:
        for w in windows:
            out.extend(w.add(t_us, event))
    for w in windows:
        out.extend(w.flush())
    return out
