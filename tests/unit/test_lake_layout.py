"""Lake file names, time partitions and recorded cuts (adnomaly.sinks.lake.layout)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from adnomaly.sinks.lake.layout import (
    OffsetRange,
    decode_cut,
    encode_cut,
    object_path,
    parse_file_name,
    time_partition,
)


def test_hourly_partition_uses_utc_event_time() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert time_partition(datetime(2026, 3, 1, 1, 30, tzinfo=plus_two), "hourly") == "dt=2026-02-28/hour=23"
    assert time_partition(datetime(2026, 3, 1, 9, 0, tzinfo=UTC), "hourly") == "dt=2026-03-01/hour=09"


def test_daily_partition_has_no_hour() -> None:
    assert time_partition(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), "daily") == "dt=2026-03-01"


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        time_partition(datetime(2026, 3, 1), "hourly")


def test_file_name_round_trips_and_names_only_the_range() -> None:
    offsets = OffsetRange("pipe-raw", 3, 1000, 1999)
    assert offsets.file_name == "pipe-raw+3+1000-1999.parquet"
    assert object_path("dt=2026-03-01/hour=09", offsets) == "dt=2026-03-01/hour=09/pipe-raw+3+1000-1999.parquet"
    assert parse_file_name("dt=2026-03-01/hour=09/pipe-raw+3+1000-1999.parquet") == offsets
    assert parse_file_name("dt=2026-03-01/hour=10/pipe-raw+3+1000-1999.parquet") == offsets


@pytest.mark.parametrize(
    "name", ["x.parquet", "t+1+5.parquet", "t+1+5-6.csv", ".t+1+5-6.parquet.123.tmp", "t+a+5-6.parquet"]
)
def test_other_names_are_not_lake_files(name: str) -> None:
    assert parse_file_name(name) is None


def test_invalid_ranges_are_refused() -> None:
    with pytest.raises(ValueError):
        OffsetRange("t", 0, 10, 9)
    with pytest.raises(ValueError):
        OffsetRange("t", -1, 0, 0)


def test_overlap() -> None:
    a = OffsetRange("t", 0, 0, 99)
    assert a.overlaps(OffsetRange("t", 0, 99, 120))
    assert not a.overlaps(OffsetRange("t", 0, 100, 120))
    assert not a.overlaps(OffsetRange("t", 1, 0, 99))
    assert not a.overlaps(OffsetRange("u", 0, 0, 99))


def test_cut_is_read_back_only_at_its_own_offset() -> None:
    metadata = encode_cut(100, 180)
    assert decode_cut(metadata, 100) == 180
    assert decode_cut(metadata, 181) is None  # committed past it: the cut is done
    assert decode_cut("", 100) is None
    assert decode_cut(None, 100) is None
    assert decode_cut("someone else's metadata", 100) is None
    with pytest.raises(ValueError):
        encode_cut(5, 4)
