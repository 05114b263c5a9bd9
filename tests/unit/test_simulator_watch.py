"""The stand-in for Strimzi and the Flink operator lists once, then follows the watch (adnomaly_operator.simulate)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from adnomaly_operator.client import ApiError
from adnomaly_operator.simulate import Simulator


def topic(name: str, ready: bool = False) -> dict[str, Any]:
    status = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]} if ready else {}
    return {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
            "metadata": {"name": name, "namespace": "ns", "generation": 1, "uid": name}, "status": status}


class FakeApi:
    """Lists and watches KafkaTopics from scripted rounds; every other kind has no CRD (404)."""

    def __init__(self, rounds: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> None:
        self.rounds = rounds  # per list: (items listed, watch events that follow)
        self.lists = 0
        self.watched_from: list[str] = []
        self.patched: list[str] = []
        self.done = asyncio.Event()

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        if "kafkatopics" not in path:
            raise ApiError(method, path, 404, "NotFound", "no CRD")
        if self.lists >= len(self.rounds):
            self.done.set()
            await asyncio.sleep(3600)
        items, _ = self.rounds[self.lists]
        self.lists += 1
        return {"items": items, "metadata": {"resourceVersion": str(self.lists * 10)}}

    async def watch(self, kind: Any, namespace: str | None, version: str) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(version)
        for event in self.rounds[int(version) // 10 - 1][1]:
            yield event

    async def merge_patch(self, kind: Any, namespace: str, name: str, patch: dict[str, Any], **_: Any) -> None:
        await asyncio.sleep(0.01)
        self.patched.append(name)


def run(api: FakeApi) -> Simulator:
    simulator = Simulator(api, flink=False, interval=0.01)  # type: ignore[arg-type]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(simulator.run(stop))
        await asyncio.wait_for(api.done.wait(), 10)
        await asyncio.sleep(0.1)  # let the last writes land
        stop.set()
        await task

    asyncio.run(main())
    return simulator


def test_pending_objects_are_made_ready_from_the_list_then_from_the_watch_and_a_stale_watch_lists_again() -> None:
    api = FakeApi([
        ([topic("a"), topic("b", ready=True)],
         [{"type": "ADDED", "object": topic("c")},
          {"type": "MODIFIED", "object": topic("b", ready=True)},  # already as wanted: nothing to write
          {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
          {"type": "ERROR", "object": {"code": 410}},  # too old: list again
          {"type": "ADDED", "object": topic("never")}]),  # not reached: the stream was given up
        ([topic("a", ready=True), topic("d")], []),
    ])
    simulator = run(api)
    assert sorted(api.patched) == ["a", "c", "d"]
    assert api.watched_from == ["10", "20"] and simulator.status_patches == 3


def test_an_object_already_being_written_is_not_written_twice() -> None:
    api = FakeApi([([], [{"type": "ADDED", "object": topic("a")}, {"type": "MODIFIED", "object": topic("a")}])])
    run(api)
    assert api.patched == ["a"]
