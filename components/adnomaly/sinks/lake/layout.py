"""Where lake files go and what they are called (pure functions).

Layout: `<table root>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first>-<last>.parquet` (hourly) or
`<table root>/dt=YYYY-MM-DD/<topic>+...` (daily), by the events' EVENT time in UTC (Hive-style, so
DuckDB, Spark, Trino and pyarrow.dataset read `dt` and `hour` as columns).

A flush writes the valid events of one Kafka offset range [first, last] of one partition; when they span
several hours, each hour gets a file of the SAME name holding that hour's events. So a file's name is
determined by its offset range alone, and a replay of the range overwrites the same objects.

The offset range of a flush (its "cut") is committed to Kafka as the consumer group's offset metadata
(at offset `first`) before anything is uploaded, so a sink that crashed mid-flush, or the next owner of
the partition, replays exactly that range even if it would have cut elsewhere by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

Partitioning = Literal["hourly", "daily"]

FILE_SUFFIX = ".parquet"
_FILE_NAME = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_CUT_PREFIX = "adnomaly-lake:v1:"
_CUT = re.compile(r"^adnomaly-lake:v1:(?P<first>\d+)-(?P<last>\d+)$")


@dataclass(frozen=True, order=True)
class OffsetRange:
    """One flush of one partition: messages first..last (inclusive), valid or not."""

    topic: str
    partition: int
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.partition < 0 or self.first < 0 or self.last < self.first:
            raise ValueError(f"invalid offset range {self.partition}:{self.first}-{self.last}")

    @property
    def file_name(self) -> str:
        return f"{self.topic}+{self.partition}+{self.first}-{self.last}{FILE_SUFFIX}"

    def overlaps(self, other: OffsetRange) -> bool:
        return (
            self.topic == other.topic
            and self.partition == other.partition
            and self.first <= other.last
            and other.first <= self.last
        )


def parse_file_name(name: str) -> OffsetRange | None:
    """The offset range a lake file's name stands for; None for anything else."""
    match = _FILE_NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return OffsetRange(match["topic"], int(match["partition"]), int(match["first"]), int(match["last"]))


_BUCKET_SECONDS = {"hourly": 3600, "daily": 86400}


def time_bucket(event_time: datetime, partitioning: Partitioning) -> int:
    """The hour (or day) of an aware event time, as a number: cheap to group by (per-event hot path)."""
    if event_time.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return int(event_time.timestamp() // _BUCKET_SECONDS[partitioning])


@lru_cache(maxsize=4096)
def bucket_dir(bucket: int, partitioning: Partitioning) -> str:
    """`dt=2026-02-12/hour=07` (hourly) or `dt=2026-02-12` (daily) for a `time_bucket`, in UTC."""
    start = datetime.fromtimestamp(bucket * _BUCKET_SECONDS[partitioning], UTC)
    day = f"dt={start:%Y-%m-%d}"
    return f"{day}/hour={start:%H}" if partitioning == "hourly" else day


def time_partition(event_time: datetime, partitioning: Partitioning) -> str:
    """`dt=2026-02-12/hour=07` (hourly) or `dt=2026-02-12` (daily) for an aware event time, in UTC."""
    return bucket_dir(time_bucket(event_time, partitioning), partitioning)


def object_path(time_dir: str, offsets: OffsetRange) -> str:
    """Path of a lake file relative to the table root."""
    return f"{time_dir}/{offsets.file_name}"


def encode_cut(first: int, last: int) -> str:
    """Offset-commit metadata recording that the range first..last is being flushed."""
    if first < 0 or last < first:
        raise ValueError(f"invalid cut {first}-{last}")
    return f"{_CUT_PREFIX}{first}-{last}"


def decode_cut(metadata: str | None, committed_offset: int) -> int | None:
    """The last offset of the cut recorded at `committed_offset`, if the metadata records one there."""
    if not metadata:
        return None
    match = _CUT.match(metadata)
    if match is None or int(match["first"]) != committed_offset:
        return None
    return int(match["last"])
