"""Progress-only status writes: one Pipeline's interval, and the fleet's shared budget (adnomaly_operator.budget)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from adnomaly_operator import reconcile
from adnomaly_operator.budget import WriteBudget
from adnomaly_operator.reconcile import Reconciler
from adnomaly_operator.status import Observation

# -- the budget --


def test_a_burst_is_granted_at_once_and_the_rest_queue_one_slot_apart_in_order() -> None:
    budget = WriteBudget(rate=10.0, burst=3)
    assert [budget.reserve(100.0) for _ in range(3)] == [100.0, 100.0, 100.0]
    assert [round(budget.reserve(100.0), 6) for _ in range(3)] == [100.1, 100.2, 100.3]
    # a caller arriving later still queues behind the reservations already made
    assert round(budget.reserve(100.15), 6) == 100.4


def test_tokens_come_back_with_time_up_to_the_burst() -> None:
    budget = WriteBudget(rate=2.0, burst=2)
    assert budget.reserve(0.0) == 0.0 and budget.reserve(0.0) == 0.0
    assert budget.reserve(0.0) == 0.5  # the debt is paid at 2/s
    assert budget.reserve(10.0) == 10.0 and budget.reserve(10.0) == 10.0  # refilled, but only to the burst
    assert budget.reserve(10.0) == 10.5


def test_a_rate_of_zero_is_unlimited() -> None:
    budget = WriteBudget(rate=0.0)
    assert {budget.reserve(5.0) for _ in range(1000)} == {5.0}


# -- the reconciler's status writes --


class StatusKube:
    """Records status patches; answers with a growing resourceVersion."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str]] = []

    async def merge_patch(
        self, kind: Any, namespace: str, name: str, patch: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.patches.append((name, patch["status"]["readyComponents"]))
        return {"metadata": {"resourceVersion": str(len(self.patches) + 100)}}

    async def post_event(self, *args: Any, **kwargs: Any) -> None:
        return None


def progress(ready: int, total: int = 4) -> Observation:
    not_ready = tuple(f"c{i}" for i in range(total - ready))
    return Observation(1, {f"c{i}": "Pending" for i in range(total)}, not_ready, total, 3)


def body(name: str, status: dict[str, Any] | None, rv: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "generation": 1, "resourceVersion": str(rv)},
            "status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(reconcile.time, "monotonic", clock)
    return clock


def write(rec: Reconciler, name: str, status: dict[str, Any] | None, obs: Observation) -> tuple[bool, float | None]:
    return asyncio.run(rec._write_status(("ns", name), body(name, status, rv=10_000), obs))


def test_progress_of_many_pipelines_shares_the_budget_and_a_phase_change_never_waits(clock: Clock) -> None:
    kube = StatusKube()
    rec = Reconciler(kube, lambda key: {}, status_interval=2.0, status_budget=WriteBudget(rate=2.0, burst=2))  # type: ignore[arg-type]
    names = [f"p{i}" for i in range(5)]
    first = {}
    for name in names:  # a first status is written at once, whatever the budget says
        assert write(rec, name, None, progress(0)) == (True, None)
        first[name] = rec._statuses[("ns", name)][0]
    clock.now += 2.5  # past every Pipeline's own interval: now only the fleet's budget holds them back
    results = {name: write(rec, name, first[name], progress(1)) for name in names}
    assert [results[n] for n in names[:2]] == [(True, None), (True, None)]  # the burst
    assert [results[n][0] for n in names[2:]] == [False, False, False]
    assert [results[n][1] for n in names[2:]] == pytest.approx([0.5, 1.0, 1.5])  # re-queued one slot apart
    # asked again before its slot, a Pipeline keeps its place and takes no second token
    assert write(rec, "p4", first["p4"], progress(1)) == (False, pytest.approx(1.5))
    # a phase change is written at once and does not queue
    ready = write(rec, "p3", first["p3"], Observation(1, {"c0": "Ready"}, (), 1, None))
    assert ready == (True, None) and kube.patches[-1] == ("p3", "1/1")
    clock.now += 0.5
    assert write(rec, "p2", first["p2"], progress(1)) == (True, None)  # its slot came
    assert write(rec, "p4", first["p4"], progress(1)) == (False, pytest.approx(1.0))
    clock.now += 1.0
    assert write(rec, "p4", first["p4"], progress(1)) == (True, None)
    assert [p for p, _ in kube.patches[5:]] == ["p0", "p1", "p3", "p2", "p4"]


def test_one_pipeline_still_writes_its_progress_every_interval(clock: Clock) -> None:
    kube = StatusKube()
    rec = Reconciler(kube, lambda key: {}, status_interval=2.0)  # type: ignore[arg-type]
    assert write(rec, "p", None, progress(0)) == (True, None)
    status = rec._statuses[("ns", "p")][0]
    clock.now += 1.0
    assert write(rec, "p", status, progress(1)) == (False, pytest.approx(1.0))
    clock.now += 1.0
    assert write(rec, "p", status, progress(1)) == (True, None)


def test_only_the_exact_echo_of_our_own_status_write_is_let_go(clock: Clock) -> None:
    kube = StatusKube()
    rec = Reconciler(kube, lambda key: {}, status_interval=2.0)  # type: ignore[arg-type]
    key = ("ns", "p")
    assert not rec.own_status_echo(key, body("p", None, rv=5))  # nothing written yet
    assert write(rec, "p", None, progress(0)) == (True, None)
    status, rv, _ = rec._statuses[key]
    assert rv == 101
    assert rec.own_status_echo(key, body("p", status, rv=101))  # what our write left: no pass needed
    assert not rec.own_status_echo(key, body("p", status, rv=102))  # something changed after it (spec, labels)
    assert not rec.own_status_echo(key, body("p", {**status, "phase": "Ready"}, rv=101))
    rec.observe_pipeline(key, None)  # deleted: forgotten
    assert not rec.own_status_echo(key, body("p", status, rv=101))
