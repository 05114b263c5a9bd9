"""Which of `adnomaly bench online`'s timed lookups are the first of their entity (`first_asked`): those ask
Redis, and the bench reports the p99 of the others beside its own."""

from __future__ import annotations

from adnomaly.bench.online import WARMUP, first_asked, lookup_order


def test_a_lookup_is_first_only_if_neither_a_warm_up_nor_an_earlier_timed_lookup_asked_its_entity() -> None:
    seen: set[int] = set()
    order = [0] * WARMUP + [0, 1, 1, 2, 0, 2]
    assert first_asked(order, seen) == [False, True, False, True, False, False]
    assert seen == {0, 1, 2}
    # the next round asks the same entities again: none is a first lookup any more
    assert first_asked(order, seen) == [False] * 6


def test_the_benchs_own_order_has_first_lookups_only_in_its_first_round() -> None:
    seen: set[int] = set()
    first_round = first_asked(lookup_order(1000, 5000), seen)
    assert 500 < sum(first_round) < 700  # ~39 % of 1,000 entities are seen in the 500 warm-ups
    assert sum(first_asked(lookup_order(1000, 5000), seen)) == 0
