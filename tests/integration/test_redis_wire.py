"""The lookups' own Redis client (`adnomaly.serving.redis_wire`) against a real redis-server.

What redis-py gave per command must hold per connection: answers in order under concurrency, the URL's
password and database, errors as redis-py's exception types, a timeout that fails the waiting lookups,
and a fresh connection after Redis restarts.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_py
from adnomaly.services.base import free_port
from adnomaly.services.redis import RedisServer
from adnomaly.serving.redis_wire import WireClient, lookup_client, pack_command
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

pytestmark = pytest.mark.integration


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_pack_command_is_resp() -> None:
    assert pack_command("HMGET", b"k", "f\u00e9") == b"*3\r\n$5\r\nHMGET\r\n$1\r\nk\r\n$3\r\nf\xc3\xa9\r\n"


def test_concurrent_lookups_each_get_their_own_answer_in_one_connection(redis: RedisServer) -> None:
    sync = redis.client()
    for i in range(200):
        sync.hset(f"wire:{i}", mapping={"a": str(i), "b": f"b{i}"})

    async def main() -> None:
        client = WireClient(redis.url)
        try:
            answers = await asyncio.gather(*(client.hmget(f"wire:{i}", ["a", "missing", b"b"]) for i in range(200)))
            assert answers == [[str(i).encode(), None, f"b{i}".encode()] for i in range(200)]
            assert await client.hmget("wire:none", ["a"]) == [None]
            assert await client.ping()
            clients = [c for c in sync.client_list() if c.get("cmd") in ("hmget", "ping")]
            assert len(clients) == 1  # every lookup shared one pipelined connection
        finally:
            await client.aclose()

    run(main())


def test_an_error_reply_fails_only_its_own_command(redis: RedisServer) -> None:
    redis.client().set("wire:string", "x")

    async def main() -> None:
        client = WireClient(redis.url)
        try:
            wrong, right = await asyncio.gather(
                client.hmget("wire:string", ["a"]), client.ping(), return_exceptions=True
            )
            assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
            assert right is True
        finally:
            await client.aclose()

    run(main())


def test_the_urls_database_is_selected_and_a_wrong_password_is_refused(redis: RedisServer) -> None:
    db3 = redis.url.rsplit("/", 1)[0] + "/3"
    redis_py.Redis.from_url(db3).hset("wire:db3", mapping={"a": "3"})

    async def main() -> None:
        in_db3 = WireClient(db3)
        in_db0 = WireClient(redis.url)
        refused = WireClient(f"redis://:wrong@127.0.0.1:{redis.port}/0")
        try:
            assert await in_db3.hmget("wire:db3", ["a"]) == [b"3"]
            assert await in_db0.hmget("wire:db3", ["a"]) == [None]
            with pytest.raises(AuthenticationError):
                await refused.hmget("wire:db3", ["a"])
        finally:
            for client in (in_db3, in_db0, refused):
                await client.aclose()

    run(main())


def test_no_redis_is_a_connection_error() -> None:
    async def main() -> None:
        client = WireClient(f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(RedisConnectionError):
            await client.hmget("k", ["a"])

    run(main())


def test_a_redis_that_stops_answering_fails_the_waiting_lookups_within_the_timeout(
    make_redis: Callable[..., RedisServer],
) -> None:
    server = make_redis()
    pid = server.pid
    assert pid is not None

    async def main() -> None:
        client = WireClient(server.url, timeout=0.5)
        try:
            assert await client.hmget("k", ["a"]) == [None]
            os.kill(pid, signal.SIGSTOP)  # the socket stays open, nothing answers
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                results = await asyncio.gather(*(client.hmget("k", ["a"]) for _ in range(5)), return_exceptions=True)
                waited = loop.time() - started
            finally:
                os.kill(pid, signal.SIGCONT)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert 0.5 <= waited < 2.0
            assert await client.hmget("k", ["a"]) == [None]  # a fresh connection once Redis answers again
        finally:
            await client.aclose()

    run(main())


def test_after_redis_restarts_the_next_lookup_connects_afresh(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()

    async def main() -> None:
        client = WireClient(server.url)
        try:
            server.client().hset("k", mapping={"a": "1"})
            assert await client.hmget("k", ["a"]) == [b"1"]
            server.stop()
            with pytest.raises(RedisError):
                await client.hmget("k", ["a"])
            server.start()
            assert await client.hmget("k", ["a"]) == [b"1"]  # AOF kept it; the client reconnected by itself
        finally:
            await client.aclose()

    run(main())


def test_tls_urls_are_left_to_redis_py() -> None:
    assert isinstance(lookup_client("redis://:p@127.0.0.1:6379/0"), WireClient)
    assert not isinstance(lookup_client("rediss://:p@127.0.0.1:6379/0"), WireClient)
