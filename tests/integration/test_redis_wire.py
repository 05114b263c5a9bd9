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

import hiredis
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


# -- answers kept while Redis tracks their keys (cache_keys > 0) -------------------------------------------


def _hmgets(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def test_kept_answers_spare_redis_and_a_change_reaches_the_next_lookup(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()  # private: its HMGET count is this test's alone
    writer = server.client()
    writer.hset("k", mapping={"a": "1"})

    async def main() -> None:
        client = WireClient(server.url, cache_keys=100)  # with the URL's password: HELLO 3 AUTH default …
        try:
            assert await client.hmget("k", ["a", "b"]) == [b"1", None]
            assert await client.hmget("none", ["a"]) == [None]  # an absent key is tracked and kept too
            for _ in range(50):
                assert await client.hmget("k", ["a", "b"]) == [b"1", None]
                assert await client.hmget("none", ["a"]) == [None]
            assert _hmgets(server) == 2
            assert client.cache is not None and (client.cache.hits, client.cache.misses) == (100, 2)
            writer.hset("k", mapping={"a": "2"})
            writer.hset("none", mapping={"a": "now"})
            # Redis sent the invalidations before the PING's reply on the same connection: once it is back,
            # they have been applied, and the next lookups ask Redis again.
            assert await client.ping()
            assert await client.hmget("k", ["a", "b"]) == [b"2", None]
            assert await client.hmget("none", ["a"]) == [b"now"]
            assert _hmgets(server) == 4
            writer.flushall()
            assert await client.ping()
            assert await client.hmget("k", ["a"]) == [None]
        finally:
            await client.aclose()

    run(main())


def test_a_stalled_redis_is_not_hidden_behind_kept_answers_for_longer_than_max_staleness(
    make_redis: Callable[..., RedisServer],
) -> None:
    server = make_redis()
    server.client().hset("k", mapping={"a": "1"})
    pid = server.pid
    assert pid is not None

    async def main() -> None:
        client = WireClient(server.url, timeout=0.5, cache_keys=100, max_staleness=0.2)
        try:
            assert await client.hmget("k", ["a"]) == [b"1"]
            os.kill(pid, signal.SIGSTOP)
            try:
                assert await client.hmget("k", ["a"]) == [b"1"]  # heard from Redis < 0.2 s ago: kept answer
                await asyncio.sleep(0.25)
                with pytest.raises(RedisTimeoutError):
                    await client.hmget("k", ["a"])  # too long unheard: asks Redis, which does not answer
            finally:
                os.kill(pid, signal.SIGCONT)
            assert client.cache is not None and len(client.cache) == 0  # the failed connection took it all
            assert await client.hmget("k", ["a"]) == [b"1"]
        finally:
            await client.aclose()

    run(main())


def test_a_reconnected_client_keeps_nothing_from_before(make_redis: Callable[..., RedisServer]) -> None:
    """Changes made while the client was disconnected were never announced to it."""
    server = make_redis()
    server.client().hset("k", mapping={"a": "1"})

    async def main() -> None:
        client = WireClient(server.url, cache_keys=100)
        try:
            assert await client.hmget("k", ["a"]) == [b"1"]
            for info in server.client().client_list():
                if info.get("cmd") == "hmget":
                    server.client().client_kill_filter(_id=info["id"])
            server.client().hset("k", mapping={"a": "2"})  # nobody tracks k now: no invalidation is sent
            with pytest.raises(RedisError):
                await client.ping()  # the client learns the connection is gone
            assert await client.hmget("k", ["a"]) == [b"2"]
        finally:
            await client.aclose()

    run(main())


def test_a_wrong_password_is_still_refused_with_hello(redis: RedisServer) -> None:
    async def main() -> None:
        refused = WireClient(f"redis://:wrong@127.0.0.1:{redis.port}/0", cache_keys=10)
        selected = WireClient(redis.url.rsplit("/", 1)[0] + "/5", cache_keys=10)
        redis_py.Redis.from_url(redis.url.rsplit("/", 1)[0] + "/5").hset("wire:db5", mapping={"a": "5"})
        try:
            with pytest.raises(AuthenticationError):
                await refused.hmget("k", ["a"])
            assert await selected.hmget("wire:db5", ["a"]) == [b"5"]
            assert await selected.hmget("wire:db5", ["a"]) == [b"5"]
            assert selected.cache is not None and selected.cache.hits == 1
        finally:
            await refused.aclose()
            await selected.aclose()

    run(main())


def test_a_redis_without_resp3_is_served_without_keeping_anything() -> None:
    """A Redis before 6.0 (or a proxy) answers HELLO with an error: the client logs in the RESP2 way."""
    seen: list[list[bytes]] = []

    async def resp2_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                seen.append(command)
                name = command[0].upper()
                if name == b"HELLO":
                    writer.write(b"-ERR unknown command 'HELLO'\r\n")
                elif name in (b"AUTH", b"SELECT"):
                    writer.write(b"+OK\r\n")
                else:
                    writer.write(b"*1\r\n$1\r\n1\r\n")
            await writer.drain()

    async def main() -> None:
        server = await asyncio.start_server(resp2_only, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = WireClient(f"redis://:secret@127.0.0.1:{port}/2", cache_keys=10)
        try:
            for _ in range(3):
                assert await client.hmget("k", ["a"]) == [b"1"]
        finally:
            await client.aclose()
            server.close()

    run(main())
    assert [c[0] for c in seen] == [b"HELLO", b"AUTH", b"SELECT", b"HMGET", b"HMGET", b"HMGET"]
    assert seen[1] == [b"AUTH", b"secret"]
