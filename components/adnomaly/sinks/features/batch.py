"""A consumed batch of feature records → the writes it asks for (pure).

Records that cannot be decoded, name an unknown feature or lack/add dimensions are skipped and counted
(the features topic is written by our own Flink job: such a record is a bug to see in the metrics and
logs, not data to keep). Within a batch, the PostgreSQL rows are de-duplicated by their primary key
(the later message wins, as it would in separate batches); Redis gets every record in order and keeps
the newest window by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adnomaly.features.record import DECODER, FeatureRecord, entity_key
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.online import FeastTarget, OnlineWrite, online_write, utc

MALFORMED = "malformed"
UNKNOWN_FEATURE = "unknown_feature"
BAD_DIMENSIONS = "bad_dimensions"
BAD_VALUES = "bad_values"
_MAX_COUNT = 2**63 - 1


@dataclass(frozen=True)
class HistoryRow:
    """One row of `feature_aggregates`."""

    feature: str
    entity_key: str
    dimensions: dict[str, str]
    window_start: Any  # aware datetime
    window_end: Any
    metrics: dict[str, float | None]
    event_count: int

    @property
    def primary_key(self) -> tuple[str, str, Any]:
        return (self.feature, self.entity_key, self.window_end)


@dataclass
class FeatureBatch:
    online: list[OnlineWrite] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) → next offset
    size: int = 0


def check_record(record: FeatureRecord, views: Mapping[str, FeatureView]) -> str | None:
    """Why the record cannot be stored (a skip reason), or None."""
    view = views.get(record.feature)
    if view is None:
        return UNKNOWN_FEATURE
    if set(record.dimensions) != set(view.dimensions):
        return BAD_DIMENSIONS
    if not 0 <= record.event_count <= _MAX_COUNT or utc(record.window_end) < utc(record.window_start):
        return BAD_VALUES
    return None


def prepare(
    messages: Sequence[Any], views: Mapping[str, FeatureView], targets: Mapping[str, FeastTarget]
) -> FeatureBatch:
    """The writes for a batch of Kafka messages (objects with value/topic/partition/offset/error); `targets`
    (`online.feast_targets(views, project)`) place each view's windows in Feast's layout."""
    batch = FeatureBatch(size=len(messages))
    rows: dict[tuple[str, str, Any], HistoryRow] = {}
    for message in messages:
        if message.error() is not None:
            continue
        batch.offsets[(message.topic(), message.partition())] = message.offset() + 1
        try:
            record = DECODER.decode(message.value() or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            batch.skipped[MALFORMED] = batch.skipped.get(MALFORMED, 0) + 1
            continue
        reason = check_record(record, views)
        if reason is not None:
            batch.skipped[reason] = batch.skipped.get(reason, 0) + 1
            continue
        view = views[record.feature]
        batch.online.append(online_write(targets[record.feature], record))
        row = HistoryRow(
            feature=record.feature,
            entity_key=entity_key(record.dimensions, view.dimensions),
            dimensions=dict(record.dimensions),
            window_start=utc(record.window_start),
            window_end=utc(record.window_end),
            metrics=dict(record.metrics),
            event_count=record.event_count,
        )
        rows.pop(row.primary_key, None)  # the later one wins, and keeps the order of arrival
        rows[row.primary_key] = row
    batch.history = list(rows.values())
    return batch
