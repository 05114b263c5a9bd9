"""The raw-stream feature behind malformedStorm: the share of invalid (dead-lettered) events per window.

It is a `FeatureRecord` of the reserved feature `_dlq` (`adnomaly.spec.DLQ_FEATURE`) with no dimensions and
the metrics `invalid_share`, `invalid_count` and `event_count` (all raw records), on tumbling windows by
record time, so the ordinary detectors (e.g. a threshold on `invalid_share`) judge it.

The benchmark feeds it each event with its verdict, in time order (`add`: the watermark is the newest
time). The detector component counts the record timestamps of the raw topic (`count_raw`, every event,
valid or not) and of the dead-letter topic (`count_invalid`), each with its source partition, and after
each batch `fire`s up to `watermark(lagging)`: the oldest newest-timestamp of the partitions that still
have records to read (a backlog read one partition after another fires nothing early), or the newest of
all when every partition is caught up. A window fires once the watermark is `lateness` past its end (dead
letters are produced a little after their raw record); later records of a fired window are counted in
`late` and dropped. The state round-trips through `state()` / `from_state()`, so the component persists
it with its offsets.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adnomaly.features.record import FeatureRecord
from adnomaly.spec import DLQ_FEATURE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = -(1 << 62)

__all__ = ["DLQ_FEATURE", "InvalidShareWindows"]


@dataclass
class InvalidShareWindows:
    size_us: int
    lateness_us: int = 0
    late: int = 0  # records dropped because their window had fired
    _counts: dict[int, list[int]] = field(default_factory=dict)  # window start -> [all, invalid]
    _newest: dict[str, int] = field(default_factory=dict)  # source partition -> newest timestamp
    _fired_until: int = NEVER  # windows starting before this have fired

    def __post_init__(self) -> None:
        if self.size_us <= 0 or self.lateness_us < 0:
            raise ValueError("the `_dlq` window must be positive and its lateness not negative")

    def add(self, t_us: int, valid: bool) -> list[FeatureRecord]:
        """One event and its verdict, in time order (the benchmark's path)."""
        self._count(t_us, 1, 0 if valid else 1, "")
        return self.fire(self._newest[""])

    def count_raw(self, t_us: int, source: str) -> bool:
        """One raw record, valid or not; False when its window has fired (dropped, counted in `late`)."""
        return self._count(t_us, 1, 0, source)

    def count_invalid(self, t_us: int, source: str) -> bool:
        """One dead letter (its raw record is counted by `count_raw`); False when too late."""
        return self._count(t_us, 0, 1, source)

    def watermark(self, lagging: Collection[str]) -> int:
        """Event time up to which every record has been counted, given the sources with records left to read.

        A lagging source not seen yet holds everything back; with no lagging source, the newest time seen."""
        if not self._newest:
            return NEVER
        behind = [self._newest.get(source, NEVER) for source in lagging]
        return min(behind) if behind else max(self._newest.values())

    def fire(self, watermark_us: int) -> list[FeatureRecord]:
        ready = sorted(s for s in self._counts if s + self.size_us + self.lateness_us <= watermark_us)
        return [self._emit(s) for s in ready]

    def flush(self) -> list[FeatureRecord]:
        return [self._emit(s) for s in sorted(self._counts)]

    def _count(self, t_us: int, total: int, invalid: int, source: str) -> bool:
        self._newest[source] = max(self._newest.get(source, NEVER), t_us)
        start = t_us - t_us % self.size_us
        if start < self._fired_until:
            self.late += 1
            return False
        counts = self._counts.setdefault(start, [0, 0])
        counts[0] += total
        counts[1] += invalid
        return True

    def _emit(self, start: int) -> FeatureRecord:
        total, invalid = self._counts.pop(start)
        self._fired_until = max(self._fired_until, start + self.size_us)
        return FeatureRecord(
            feature=DLQ_FEATURE, dimensions={}, window_start=EPOCH + timedelta(microseconds=start),
            window_end=EPOCH + timedelta(microseconds=start + self.size_us),
            metrics={"invalid_share": min(1.0, invalid / max(total, 1)), "invalid_count": float(invalid),
                     "event_count": float(total)},
            event_count=total,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {"counts": [[s, c[0], c[1]] for s, c in sorted(self._counts.items())],
                "newest": dict(sorted(self._newest.items())), "fired_until": self._fired_until,
                "late": self.late}  # fmt: skip

    @classmethod
    def from_state(cls, size_us: int, lateness_us: int, state: dict[str, Any]) -> InvalidShareWindows:
        windows = cls(size_us, lateness_us, late=int(state.get("late", 0)))
        windows._counts = {int(s): [int(total), int(invalid)] for s, total, invalid in state.get("counts", [])}
        windows._newest = {str(k): int(t) for k, t in dict(state.get("newest", {})).items()}
        windows._fired_until = int(state.get("fired_until", NEVER))
        return windows
