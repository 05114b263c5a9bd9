"""The raw-stream feature behind malformedStorm: the share of invalid (dead-lettered) events per window.

It is a `FeatureRecord` of the reserved feature `_dlq` with no dimensions and the metrics `invalid_share`,
`invalid_count` and `event_count` (all raw records), on tumbling windows by record time, so the ordinary
detectors (e.g. a threshold on `invalid_share`) judge it. In the running system the same numbers are the
processor's per-window counts of dead-lettered vs all consumed raw records (the DLQ topic's records carry
the original record's timestamp): a detector consuming the raw and DLQ topics' timestamps, or the
processor's `adnomaly_processor_*` counters, feed this record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from adnomaly.features.record import FeatureRecord

DLQ_FEATURE = "_dlq"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class InvalidShareWindows:
    size_us: int
    _counts: dict[int, list[int]] = field(default_factory=dict)  # window start -> [all, invalid]
    _newest: int = -(1 << 62)

    def add(self, t_us: int, valid: bool) -> list[FeatureRecord]:
        start = t_us - t_us % self.size_us
        counts = self._counts.setdefault(start, [0, 0])
        counts[0] += 1
        counts[1] += 0 if valid else 1
        self._newest = max(self._newest, t_us)
        ready = sorted(s for s in self._counts if s + self.size_us <= self._newest)
        return [self._emit(s) for s in ready]

    def flush(self) -> list[FeatureRecord]:
        return [self._emit(s) for s in sorted(self._counts)]

    def _emit(self, start: int) -> FeatureRecord:
        total, invalid = self._counts.pop(start)
        return FeatureRecord(
            feature=DLQ_FEATURE, dimensions={}, window_start=EPOCH + timedelta(microseconds=start),
            window_end=EPOCH + timedelta(microseconds=start + self.size_us),
            metrics={"invalid_share": invalid / total, "invalid_count": float(invalid)}, event_count=total,
        )  # fmt: skip
