"""Which saved detector checkpoint a restart resumes from (`adnomaly.detector.checkpoint.matching`)."""

from __future__ import annotations

from adnomaly.detector.checkpoint import matching, offset_key

F0, F1, RAW = offset_key("feat", 0), offset_key("feat", 1), offset_key("raw", 0)


def test_offset_key() -> None:
    assert offset_key("a.b-c_d", 12) == "a.b-c_d:12"


def test_newest_when_kafka_committed_it() -> None:
    saved = [(4, {F0: 10, F1: 3}, b"four"), (5, {F0: 12, F1: 3}, b"five")]
    assert matching(saved, {F0: 12, F1: 3}, ["feat"]) == (5, {F0: 12, F1: 3}, b"five")


def test_previous_when_the_kafka_transaction_never_committed() -> None:
    saved = [(5, {F0: 12, F1: 3}, b"five"), (4, {F0: 10, F1: 3}, b"four")]
    assert matching(saved, {F0: 10, F1: 3}, ["feat"]) == (4, {F0: 10, F1: 3}, b"four")


def test_nothing_when_no_offsets_agree() -> None:
    saved = [(5, {F0: 12}, b"five"), (4, {F0: 10}, b"four")]
    assert matching(saved, {F0: 11}, ["feat"]) is None
    assert matching(saved, {}, ["feat"]) is None  # group offsets expired or reset: fall back
    assert matching([], {F0: 11}, ["feat"]) is None  # an older deployment without checkpoints


def test_fresh_start_and_uncommitted_partitions() -> None:
    assert matching([], {}, ["feat"]) is None
    saved = [(1, {F0: 4}, b"one")]
    assert matching(saved, {F0: 4, F1: -1001}, ["feat"]) == (1, {F0: 4}, b"one")  # -1001: nothing committed


def test_only_the_topics_consumed_now_are_compared() -> None:
    saved = [(7, {F0: 4, RAW: 900}, b"seven")]
    assert matching(saved, {F0: 4}, ["feat"]) == (7, {F0: 4}, b"seven")  # `_dlq` detectors removed since
    assert matching(saved, {F0: 4, RAW: 899}, ["feat", "raw"]) is None
