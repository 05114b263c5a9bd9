"""The reconcile work queue: one pass per key at a time, no duplicates, nothing lost, retries, blocking."""

from __future__ import annotations

import asyncio

import pytest
from adnomaly_operator.workqueue import WorkQueue


async def _settle(queue: WorkQueue[str], seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


@pytest.mark.timeout(10)
def test_keys_are_deduplicated_and_never_processed_concurrently() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        running: set[str] = set()
        gate = asyncio.Event()

        async def handler(key: str) -> None:
            assert key not in running, "two passes of one key at once"
            running.add(key)
            seen.append(key)
            await gate.wait()
            running.discard(key)

        queue: WorkQueue[str] = WorkQueue(handler, workers=4)
        queue.start()
        for _ in range(5):
            queue.add("a")
        queue.add("b")
        await _settle(queue)
        queue.add("a")  # while "a" runs: exactly one more pass afterwards
        queue.add("a")
        gate.set()
        await _settle(queue, 0.2)
        await queue.stop()
        return seen

    seen = asyncio.run(scenario())
    assert sorted(seen) == ["a", "a", "b"]


@pytest.mark.timeout(10)
def test_a_failing_key_comes_back_after_a_backoff() -> None:
    async def scenario() -> int:
        calls = 0

        async def handler(key: str) -> None:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise RuntimeError("API server busy")

        queue: WorkQueue[str] = WorkQueue(handler, workers=1, backoff=(0.05, 0.05))
        queue.start()
        queue.add("a")
        await _settle(queue, 0.5)
        await queue.stop()
        return calls

    assert asyncio.run(scenario()) == 3


@pytest.mark.timeout(10)
def test_requeue_after_and_block_for_deletion() -> None:
    async def scenario() -> tuple[int, bool]:
        calls = 0
        started = asyncio.Event()
        release = asyncio.Event()

        async def handler(key: str) -> float | None:
            nonlocal calls
            calls += 1
            started.set()
            await release.wait()
            return 0.05  # "look again soon"

        queue: WorkQueue[str] = WorkQueue(handler, workers=2)
        queue.start()
        queue.add("a")
        await started.wait()
        blocking = asyncio.create_task(queue.block("a"))
        await _settle(queue)
        waited = not blocking.done()  # block() waits for the running pass
        release.set()
        await blocking
        queue.add("a")  # ignored while blocked
        await _settle(queue, 0.3)  # and the requeue-after does not fire either
        await queue.stop()
        return calls, waited

    calls, waited = asyncio.run(scenario())
    assert waited and calls == 1
