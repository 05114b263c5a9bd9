"""A de-duplicating work queue (the client-go pattern): a key is queued at most once, never processed by
two workers at once, and re-queued when it was added again while being processed. Failed keys come back
after an exponential backoff. Events, timers and startup just `add()`; workers do the reconciling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from adnomaly_operator import metrics

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(
        self, handler: Callable[[K], Awaitable[float | None]], *, workers: int = 8,
        backoff: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30),
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._backoff = backoff
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._blocked: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._idle: dict[K, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconciler-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        if key in self._blocked:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
            metrics.QUEUE_DEPTH.set(len(self._queued))

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        previous = self._timers.get(key)
        loop = asyncio.get_running_loop()
        if previous is not None and previous.when() <= loop.time() + delay:
            return  # an earlier retry is already scheduled
        if previous is not None:
            previous.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def block(self, key: K) -> None:
        """Stop processing `key` (its object is being deleted) and wait for a running pass to end."""
        self._blocked.add(key)
        self._dirty.discard(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        while key in self._processing:
            event = self._idle.setdefault(key, asyncio.Event())
            await event.wait()

    def forget(self, key: K) -> None:
        """The object is gone: drop every trace of `key` (a new object by that name starts fresh)."""
        self._blocked.discard(key)
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            metrics.QUEUE_DEPTH.set(len(self._queued))
            if key in self._blocked:
                continue
            self._processing.add(key)
            try:
                requeue = await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the handler logs; the key comes back after a backoff
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                self.add_after(key, self._backoff[min(failures, len(self._backoff) - 1)])
            else:
                self._failures.pop(key, None)
                if requeue is not None:
                    self.add_after(key, requeue)
            finally:
                self._processing.discard(key)
                idle = self._idle.pop(key, None)
                if idle is not None:
                    idle.set()
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
