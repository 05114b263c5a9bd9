"""Offsets a consumer has earned but Kafka has not yet taken.

A component commits a batch's offsets after the batch is written. When Kafka refuses that commit (a broker
restarting, the group coordinator moving, a rebalance in flight) the write stands and is idempotent, so
the batch is merely *owed* a commit. Logging the refusal and moving on is not enough: the next batch's
commit carries the owed offsets with it, but if no next batch comes (the load stopped, the topic is
idle) the group's committed offset stays behind for good. Its lag, which operators alert on and KEDA
scales on, then never returns to zero although everything was stored — the fault suite caught exactly
this after a Kafka restart at the end of a run.

So the owed offsets are kept (the highest per partition), offered again with the next commit, and retried
on their own while the consumer idles. A partition no longer assigned is forgotten: its next owner
replays from the last commit that did land, and the idempotent writes make that replay harmless. Kafka's
own consumer does the same with `enable.auto.commit` (it retries the latest position on the next
interval); the components commit by hand only because a commit must follow the write.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition


class Committing(Protocol):
    """The parts of confluent_kafka.Consumer a commit needs."""

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any: ...
    def assignment(self) -> list[TopicPartition]: ...


class CommitFailed(RuntimeError):
    """Kafka refused an offset commit: all of it (`refused` is None) or the partitions in `refused`."""

    def __init__(self, message: str, refused: set[tuple[str, int]] | None = None) -> None:
        super().__init__(message)
        self.refused = refused


def commit(consumer: Committing, offsets: Iterable[TopicPartition]) -> None:
    """Commit synchronously; raise CommitFailed if Kafka refused the commit or any partition of it."""
    offsets = list(offsets)
    if not offsets:
        return
    try:
        result = consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        raise CommitFailed(str(exc)) from None
    failed = [tp for tp in result or () if tp.error is not None]
    if failed:
        raise CommitFailed(
            "; ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed),
            {(tp.topic, tp.partition) for tp in failed},
        )


class OwedOffsets:
    """The offsets to commit next, per partition; cleared partition by partition as Kafka takes them."""

    def __init__(self, retry_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._owed: dict[tuple[str, int], int] = {}
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._next_retry = 0.0

    @property
    def owed(self) -> dict[tuple[str, int], int]:
        return dict(self._owed)

    def commit(self, consumer: Committing, offsets: Iterable[TopicPartition]) -> None:
        """Commit `offsets` together with anything still owed, for the partitions still assigned.

        Synchronous. Raises CommitFailed, keeping the refused offsets owed, when Kafka refused any of them."""
        for tp in offsets:
            key = (tp.topic, tp.partition)
            self._owed[key] = max(self._owed.get(key, tp.offset), tp.offset)
        self._commit_owed(consumer)

    def retry(self, consumer: Committing) -> bool:
        """Offer the owed offsets again if any are owed and the retry interval has passed.

        True when nothing is owed any more. Call it where the consumer idles."""
        if not self._owed:
            return True
        if self._clock() < self._next_retry:
            return False
        try:
            self._commit_owed(consumer)
        except CommitFailed:
            return False
        return True

    def release(self, consumer: Committing, partitions: Iterable[TopicPartition]) -> None:
        """Partitions are being revoked (called from the revoke callback, while they are still ours): one
        last try to commit what is owed, then forget it for them. A lost partition just fails the try."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        if any(key in revoked for key in self._owed):
            with contextlib.suppress(CommitFailed):  # the next owner replays from the last commit that landed
                self._commit_owed(consumer)
        self._owed = {key: offset for key, offset in self._owed.items() if key not in revoked}

    def _commit_owed(self, consumer: Committing) -> None:
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for key in [k for k in self._owed if k not in assigned]:
            del self._owed[key]  # its next owner replays from the last commit that landed
        if not self._owed:
            return
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._owed.items()]
        self._next_retry = self._clock() + self._retry_interval_s
        try:
            commit(consumer, offsets)
        except CommitFailed as exc:
            if exc.refused is not None:  # what Kafka did take is no longer owed
                self._owed = {key: offset for key, offset in self._owed.items() if key in exc.refused}
            raise
        self._owed.clear()
