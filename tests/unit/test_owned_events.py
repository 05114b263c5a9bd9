"""Which owned objects' watch events queue their Pipeline (adnomaly_operator.live.moved, handlers.Runtime),
and that every kopf handler runs on the event loop rather than in kopf's thread pool."""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import kopf
import pytest
from adnomaly_operator.handlers import OperatorConfig, Runtime, register
from adnomaly_operator.live import LiveObject, moved, summarize
from adnomaly_operator.names import ANNOTATION_HASH
from adnomaly_operator.reconcile import Key

KEY: Key = ("ns", "p")


def deployment(rv: int, available: int, *, updated: int = 1, hash_: str = "h1", uid: str = "u1") -> LiveObject:
    return summarize("Deployment", {
        "metadata": {"name": "p-processor", "uid": uid, "resourceVersion": str(rv), "generation": 1,
                     "annotations": {ANNOTATION_HASH: hash_}},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": updated,
                   "availableReplicas": available,
                   "conditions": [{"type": "Progressing", "lastUpdateTime": f"t{rv}"}]},
    })


def test_a_new_resource_version_alone_is_not_a_move() -> None:
    before = deployment(10, available=0, updated=0)
    assert not moved(before, deployment(11, available=0, updated=0))
    assert not moved(before, deployment(12, available=0, updated=1))  # an intermediate counter: 0/1 still


def test_what_a_reconcile_reads_is_a_move() -> None:
    before = deployment(10, available=0)
    assert moved(None, before)  # first sight
    assert moved(before, deployment(11, available=1))  # 0/1 -> 1/1, Ready
    assert moved(before, deployment(11, available=0, hash_="h2"))  # our own write shows
    assert moved(before, deployment(11, available=0, uid="u2"))  # deleted and created again
    assert moved(before, replace(deployment(11, available=0), deleting=True))
    assert moved(before, replace(deployment(11, available=0), managed="other"))  # someone took a field


class Recorder:
    def __init__(self) -> None:
        self.added: list[Key] = []

    def add(self, key: Key) -> None:
        self.added.append(key)


class FakeReconciler:
    def __init__(self) -> None:
        self.waiting_on_cache: set[Key] = set()


@pytest.fixture
def runtime() -> Runtime:
    rt = Runtime(OperatorConfig())
    rt.queue = Recorder()  # type: ignore[assignment]
    rt.reconciler = FakeReconciler()  # type: ignore[assignment]
    return rt


def event(rt: Runtime, index: dict[Key, list[LiveObject]], obj: LiveObject, *, deleted: bool = False) -> bool:
    """One watch event the way kopf delivers it: the indexer, then the index takes it, then on.event."""
    before = len(rt.queue.added)  # type: ignore[attr-defined]
    if not deleted:
        rt.note_owned(KEY, obj, index)
        index[KEY] = [o for o in index.get(KEY, []) if o.name != obj.name] + [obj]
    rt.owned_event(KEY, obj.uid, deleted)
    return len(rt.queue.added) > before  # type: ignore[attr-defined]


def test_only_events_that_move_something_queue_the_pipeline(runtime: Runtime) -> None:
    index: dict[Key, list[LiveObject]] = {}
    assert event(runtime, index, deployment(1, available=0, updated=0))
    assert not event(runtime, index, deployment(2, available=0, updated=0))
    assert not event(runtime, index, deployment(3, available=0, updated=1))
    assert event(runtime, index, deployment(4, available=1))
    assert not event(runtime, index, deployment(5, available=1))
    assert event(runtime, index, deployment(6, available=1), deleted=True)  # kopf indexes no deletion
    assert runtime.queue.added == [KEY, KEY, KEY]  # type: ignore[attr-defined]
    assert not runtime._unmoved  # nothing lingers once on.event has seen the event


def test_while_the_pipeline_waits_for_its_own_write_every_event_queues_it(runtime: Runtime) -> None:
    index: dict[Key, list[LiveObject]] = {}
    event(runtime, index, deployment(1, available=0))
    runtime.reconciler.waiting_on_cache.add(KEY)  # type: ignore[union-attr]
    assert event(runtime, index, deployment(2, available=0))
    runtime.reconciler.waiting_on_cache.clear()  # type: ignore[union-attr]
    assert not event(runtime, index, deployment(3, available=0))


def test_another_object_of_the_same_pipeline_is_compared_with_itself(runtime: Runtime) -> None:
    index: dict[Key, list[LiveObject]] = {}
    event(runtime, index, deployment(1, available=1))
    other = replace(deployment(2, available=1, uid="u9"), name="p-detector")
    assert event(runtime, index, other)
    assert not event(runtime, index, replace(other, resource_version=3))


def test_every_kopf_handler_is_a_coroutine() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, OperatorConfig())
    handlers: list[Any] = []
    for part in (registry._activities, registry._indexing, registry._watching, registry._spawning,
                 registry._changing):
        handlers += part.get_all_handlers()
    assert len(handlers) > 10  # the owned kinds' indexers and watchers are among them
    threaded = [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)]
    assert threaded == []
