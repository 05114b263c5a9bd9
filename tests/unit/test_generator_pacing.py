"""Pacing arithmetic, delivery counting and the stats file of the generator's I/O layer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from adnomaly.generator.pacing import MAX_BATCH, MAX_WAIT_S, Pacer
from adnomaly.generator.stats import DeliveryCounts, stats_document, write_json_atomic


def test_event_i_is_due_i_over_rate_after_the_start() -> None:
    pacer = Pacer(rate=100.0, t0=50.0)
    assert pacer.due(49.9) == 0
    assert pacer.due(50.0) == 1  # event 0 at once
    assert pacer.due(50.0099) == 1
    assert pacer.due(50.01) == 2
    assert pacer.due(51.0) == 101
    assert pacer.due_at(250) == pytest.approx(52.5)


def test_waits_are_short_and_never_negative() -> None:
    pacer = Pacer(rate=1.0, t0=0.0)
    assert pacer.wait(sent=1, now=0.2) == MAX_WAIT_S  # next due in 0.8 s: wake up early anyway
    assert pacer.wait(sent=1, now=0.99) == pytest.approx(0.01)
    assert pacer.wait(sent=1, now=5.0) == 0.0


def test_batches_hold_about_ten_milliseconds_and_are_bounded() -> None:
    assert Pacer(1.0, 0.0).batch == 1
    assert Pacer(1000.0, 0.0).batch == 10
    assert Pacer(50_000.0, 0.0).batch == 500
    assert Pacer(10_000_000.0, 0.0).batch == MAX_BATCH


def test_lag_measures_how_far_sending_is_behind() -> None:
    pacer = Pacer(rate=10.0, t0=0.0)
    assert pacer.lag(sent=11, now=1.0) == 0.0  # everything due is sent
    assert pacer.lag(sent=5, now=1.0) == pytest.approx(0.5)  # event 5 was due at 0.5 s
    with pytest.raises(ValueError):
        Pacer(rate=0.0, t0=0.0)


def test_a_steady_schedule_sends_exactly_rate_events_per_second() -> None:
    pacer = Pacer(rate=333.0, t0=10.0)
    sent = 0
    now = 10.0
    while now < 13.0:  # a loop like the runner's, on a simulated clock
        due = pacer.due(now)
        sent += min(due - sent, pacer.batch) if due > sent else 0
        now += 0.001
    assert abs(sent - 3 * 333) <= 1


class FakeError:
    def __str__(self) -> str:
        return "KafkaError{code=_MSG_TIMED_OUT}"


def test_only_acknowledged_events_count_as_produced() -> None:
    counts = DeliveryCounts()
    counts.on_valid(None, object())
    counts.on_valid(None, object())
    counts.on_invalid(None, object())
    counts.on_valid(FakeError(), object())
    counts.on_invalid(FakeError(), object())
    assert (counts.valid, counts.invalid, counts.failed, counts.produced) == (2, 1, 2, 3)
    assert counts.last_error == "KafkaError{code=_MSG_TIMED_OUT}"


def test_stats_document() -> None:
    counts = DeliveryCounts(valid=900, invalid=100)
    doc = stats_document(counts, elapsed_s=2.0, generated=1000, target_rate=500.0, labels=1, running=False)
    assert {k: doc[k] for k in ("produced", "produced_valid", "produced_invalid", "rate")} == {
        "produced": 1000, "produced_valid": 900, "produced_invalid": 100, "rate": 500.0,
    }  # fmt: skip
    assert stats_document(counts, elapsed_s=0.0, generated=0, target_rate=1.0, labels=0, running=True)["rate"] == 0


def test_stats_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "stats.json"
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            if path.exists():
                seen.append(json.loads(path.read_text())["produced"])  # never half-written

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(300):
            write_json_atomic(path, {"produced": n, "padding": "x" * 5000})
    finally:
        stop.set()
        thread.join()
    assert json.loads(path.read_text())["produced"] == 299
    assert seen == sorted(seen)
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]  # no temporary files left
