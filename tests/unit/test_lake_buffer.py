"""When the lake sink cuts a flush (adnomaly.sinks.lake.buffer)."""

from __future__ import annotations

from adnomaly.sinks.lake.buffer import Entry, FlushPolicy, PartitionBuffer, RecordedCut, due, over_memory

POLICY = FlushPolicy(events=10, bytes=10_000, interval_s=5.0)


def buffer_with(
    offsets: list[int], *, size: int = 10, now: float = 0.0, cut: RecordedCut | None = None
) -> PartitionBuffer:
    buffer = PartitionBuffer("t", 0, checked=True, cut=cut)
    for offset in offsets:
        buffer.add(Entry(offset, None, size), now)
    return buffer


def test_nothing_is_due_before_any_trigger() -> None:
    assert due(buffer_with(list(range(9))), POLICY, now=4.9) == 0


def test_count_trigger_cuts_exactly_the_policy_count() -> None:
    assert due(buffer_with(list(range(25))), POLICY, now=0.0) == 10


def test_bytes_trigger_flushes_everything() -> None:
    assert due(buffer_with(list(range(5)), size=3000), POLICY, now=0.0) == 5


def test_age_trigger_counts_from_the_oldest_message() -> None:
    buffer = buffer_with([0, 1], now=1.0)
    buffer.add(Entry(2, None, 10), 5.5)
    assert due(buffer, POLICY, now=5.9) == 0
    assert due(buffer, POLICY, now=6.0) == 3


def test_force_flushes_what_there_is() -> None:
    assert due(buffer_with([0, 1, 2]), POLICY, now=0.0, force=True) == 3
    assert due(buffer_with(list(range(12))), POLICY, now=0.0, force=True) == 10


def test_nothing_is_flushed_before_the_committed_metadata_was_read() -> None:
    buffer = buffer_with(list(range(20)))
    buffer.checked = False
    assert due(buffer, POLICY, now=100.0, force=True) == 0


def test_a_recorded_cut_waits_for_its_last_offset_whatever_the_triggers() -> None:
    cut = RecordedCut(first=100, last=114)
    buffer = buffer_with(list(range(100, 112)), cut=cut)  # 12 messages: over the count policy
    assert due(buffer, POLICY, now=100.0) == 0
    assert due(buffer, POLICY, now=100.0, force=True) == 0
    buffer.add(Entry(112, None, 10), 0.0)
    buffer.add(Entry(113, None, 10), 0.0)
    buffer.add(Entry(114, None, 10), 0.0)
    assert due(buffer, POLICY, now=0.0) == 15


def test_a_recorded_cut_is_cut_exactly_even_with_more_buffered() -> None:
    buffer = buffer_with(list(range(100, 130)), cut=RecordedCut(100, 103))
    assert due(buffer, POLICY, now=0.0) == 4
    taken = buffer.take(4, now=0.0)
    assert [e.offset for e in taken] == [100, 101, 102, 103]
    assert buffer.cut is None
    assert due(buffer, POLICY, now=0.0) == 10  # then the policy applies again


def test_a_cut_whose_last_offset_is_missing_ends_at_the_gap() -> None:
    # the cut's last message is gone (e.g. a transaction marker or compaction): everything before the gap
    buffer = buffer_with([100, 101, 102, 110], cut=RecordedCut(100, 105))
    assert due(buffer, POLICY, now=0.0) == 3


def test_a_cut_that_does_not_start_the_buffer_is_dropped() -> None:
    # the range's first messages were deleted by retention: the cut cannot be replayed, cut freely
    buffer = buffer_with(list(range(200, 230)), cut=RecordedCut(100, 250))
    assert due(buffer, POLICY, now=0.0) == 10
    assert buffer.cut is None


def test_take_keeps_the_rest_and_its_bytes() -> None:
    buffer = buffer_with(list(range(5)), size=7)
    taken = buffer.take(3, now=9.0)
    assert [e.offset for e in taken] == [0, 1, 2]
    assert [e.offset for e in buffer.entries] == [3, 4]
    assert buffer.bytes == 14
    assert buffer.started_at == 9.0
    buffer.take(2, now=10.0)
    assert buffer.started_at is None and buffer.bytes == 0


def test_a_message_seen_again_is_ignored() -> None:
    buffer = buffer_with([0, 1, 2])
    buffer.add(Entry(2, None, 10), 0.0)
    buffer.add(Entry(1, None, 10), 0.0)
    assert [e.offset for e in buffer.entries] == [0, 1, 2]


def test_memory_limit_picks_the_biggest_buffer() -> None:
    small, big = buffer_with([0], size=100), buffer_with([0, 1], size=400)
    assert over_memory([small, big], limit=1000) is None
    assert over_memory([small, big], limit=800) is big
