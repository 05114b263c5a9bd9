"""What the serving API keeps of Redis's answers while Redis tracks their keys (`adnomaly.serving.tracked_replies`),
and the order in which its connection applies replies and invalidations (`redis_wire._Replies`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from adnomaly.serving.redis_wire import _Replies
from adnomaly.serving.tracked_replies import TrackedReplies

FIELDS = (b"a", b"b")


def test_kept_answers_are_copies_and_counted() -> None:
    cache = TrackedReplies(10)
    assert cache.get(b"k", FIELDS) is None
    cache.store(b"k", FIELDS, [b"1", None])
    kept = cache.get(b"k", FIELDS)
    assert kept == [b"1", None]
    kept.append(b"changed by a caller")  # type: ignore[union-attr]
    assert cache.get(b"k", FIELDS) == [b"1", None]
    assert cache.get(b"k", (b"a",)) is None  # other fields of the same hash: not kept
    assert (cache.hits, cache.misses) == (2, 0)  # a miss is a question to Redis: its sender counts it


def test_an_invalidation_drops_every_answer_of_its_keys_and_none_drops_all() -> None:
    cache = TrackedReplies(10)
    cache.store(b"k", FIELDS, [b"1", b"2"])
    cache.store(b"k", (b"a",), [b"1"])
    cache.store(b"other", FIELDS, [b"3", b"4"])
    cache.invalidate([b"k", b"never-kept"])
    assert cache.get(b"k", FIELDS) is None and cache.get(b"k", (b"a",)) is None
    assert cache.get(b"other", FIELDS) == [b"3", b"4"]
    cache.invalidate(None)  # what Redis sends after FLUSHALL/FLUSHDB
    assert len(cache) == 0


def test_at_most_max_keys_are_kept_the_first_stored_goes_first() -> None:
    cache = TrackedReplies(2)
    for key in (b"k1", b"k2", b"k3"):
        cache.store(key, FIELDS, [key, None])
    assert len(cache) == 2
    assert cache.get(b"k1", FIELDS) is None
    assert cache.get(b"k3", FIELDS) == [b"k3", None]
    with pytest.raises(ValueError):
        TrackedReplies(0)


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def _tracking_connection(cache: TrackedReplies) -> _Replies:
    replies = _Replies(cache)
    replies.connection_made(_Transport())  # type: ignore[arg-type]
    replies.tracking = True
    return replies


def test_a_reply_and_the_invalidation_behind_it_in_one_read_leave_nothing_stale() -> None:
    """Redis answers HMGET k, then k changes and its invalidation follows on the wire; both arrive in one read.
    The reply is kept as it is parsed, so the invalidation after it drops it, even though the lookup that
    asked for it resumes only afterwards (keeping it then would keep the old value for good)."""
    cache = TrackedReplies(10)

    async def main() -> Any:
        replies = _tracking_connection(cache)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        replies.waiting.append((answer, 0.0, (b"k", FIELDS)))
        replies.data_received(b"*2\r\n$3\r\nold\r\n_\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n")
        return await answer

    assert asyncio.run(main()) == [b"old", None]  # the lookup still gets the answer Redis gave it
    assert cache.get(b"k", FIELDS) is None


def test_an_invalidation_before_a_reply_does_not_drop_the_fresh_reply() -> None:
    cache = TrackedReplies(10)
    cache.store(b"k", FIELDS, [b"old", None])

    async def main() -> None:
        replies = _tracking_connection(cache)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        replies.waiting.append((answer, 0.0, (b"k", FIELDS)))
        replies.data_received(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n*2\r\n$3\r\nnew\r\n_\r\n")
        assert await answer == [b"new", None]

    asyncio.run(main())
    assert cache.get(b"k", FIELDS) == [b"new", None]


def test_a_lost_connection_forgets_everything_kept_and_a_connection_without_tracking_keeps_nothing() -> None:
    cache = TrackedReplies(10)

    async def main() -> None:
        replies = _tracking_connection(cache)
        cache.store(b"k", FIELDS, [b"1", b"2"])
        replies.connection_lost(None)  # invalidations still on their way are lost with it
        assert len(cache) == 0
        untracked = _Replies(cache)
        untracked.connection_made(_Transport())  # type: ignore[arg-type]
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        untracked.waiting.append((answer, 0.0, (b"k", FIELDS)))
        untracked.data_received(b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n")
        assert await answer == [b"1", b"2"]
        assert len(cache) == 0  # Redis does not tell this connection of changes: nothing may be kept

    asyncio.run(main())
