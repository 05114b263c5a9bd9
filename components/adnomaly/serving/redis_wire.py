"""The lookup's one Redis command, `HMGET`, over one pipelined connection: RESP written by hand, hiredis parsing.

Why not redis-py's asyncio client, which the rest of the serving API keeps using: under `adnomaly bench
online --rate 2000`, py-spy put 24 % of the serving process's samples inside redis-py's `execute_command`
for one `HMGET` per lookup: a pool checkout and release, the retry wrapper, a health check, an
`asyncio.timeout` armed and cancelled around every read, a `StreamWriter.writelines` and the response
callbacks. A lookup needs none of that per command. Measured on this machine, one process, one `HMGET` of
five fields after another: redis-py ~4.7x the CPU per command of this client (`tests/integration/
test_redis_wire.py` pins the behaviour, `adnomaly bench online` the effect).

How it works: Redis answers the commands of one connection in the order it received them, so one connection
and a FIFO of futures serve any number of concurrent lookups; when lookups overlap their commands simply
share a round trip (pipelining, free). What redis-py gave per command is here per connection:
  - timeouts: a command not answered within `timeout` seconds fails the connection (every command queued
    behind it would wait as long), checked by one timer while commands are outstanding, not one per command;
  - failures: a lost or failed connection fails its outstanding commands with redis-py's own
    `ConnectionError`/`TimeoutError` (so callers keep catching `RedisError`), and the next command connects
    afresh: there is no retry of a command that may have reached Redis;
  - login: the URL's password (and user) go in `AUTH`, its database in `SELECT`, once per connection; error
    replies become redis-py's `ResponseError` (`AuthenticationError` for a refused login).
`redis://` and `unix://` URLs only: a TLS (`rediss://`) URL's options are redis-py's to interpret, so
`lookup_client` hands those to redis-py.

With `cache_keys` > 0 the client also keeps its `HMGET` answers while Redis tracks their keys
(`adnomaly.serving.tracked_replies`, which says why and how fresh they are): the connection then logs in with
`HELLO 3` (RESP3, whose push messages carry the invalidations on the same connection, in order with the
replies) and turns `CLIENT TRACKING ON`. A Redis that does not speak RESP3 (before 6.0) answers `HELLO` with
an error; the client then logs in as before and keeps nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, cast

import hiredis
import redis.asyncio as redis_async
from redis.asyncio.connection import parse_url
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adnomaly.serving.tracked_replies import Fields, TrackedReplies

_log = logging.getLogger("adnomaly.serving")

Field = str | bytes
# What the connection does with a reply once parsed: nothing, or keep it under (key, fields).
Keep = tuple[bytes, Fields] | None
# HELLO's errors that mean "no RESP3 here" (an old Redis, a proxy, an ACL without HELLO), not a refused login.
NO_RESP3 = ("NOPROTO", "ERR unknown command", "NOPERM")


class HashReader(Protocol):
    """What a feature lookup needs of Redis (redis-py's client has it too)."""

    async def hmget(self, name: Field, keys: Sequence[Field]) -> list[bytes | None]: ...

    async def ping(self) -> Any: ...

    async def aclose(self) -> None: ...


def _as_bytes(value: Field | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def pack_command(*args: Field | int) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Replies(asyncio.Protocol):
    """The connection's read side: each parsed reply resolves the oldest outstanding command; with a `cache`,
    replies are kept there as they are parsed and Redis's invalidation pushes drop them."""

    def __init__(self, cache: TrackedReplies | None = None) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[tuple[asyncio.Future[Any], float, Keep]] = deque()  # (reply, sent at, keep)
        self.transport: asyncio.Transport | None = None
        self.closed: BaseException | None = None
        self.cache = cache
        self.tracking = False  # set once Redis has turned CLIENT TRACKING on for this connection
        self.heard_at = 0.0  # monotonic time the last reply was parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            heard = False
            while (reply := self.reader.gets()) is not False:
                if type(reply) is hiredis.PushNotification:
                    self._pushed(reply)
                    continue
                heard = True
                future, _, keep = self.waiting.popleft()
                if isinstance(reply, ResponseError):
                    if not future.done():
                        future.set_exception(reply)
                    continue
                if keep is not None and self.tracking:
                    assert self.cache is not None
                    self.cache.store(keep[0], keep[1], reply)  # before any invalidation behind it is read
                if not future.done():  # else its caller was cancelled: the reply is dropped, the order kept
                    future.set_result(reply)
            if heard:
                self.heard_at = time.monotonic()
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(RedisConnectionError(f"Redis protocol error: {exc!r}"))

    def _pushed(self, message: list[Any]) -> None:
        """An out-of-band RESP3 message: `invalidate` with the changed keys (or None: all of them)."""
        if self.cache is not None and len(message) == 2 and message[0] == b"invalidate":
            self.cache.invalidate(message[1])

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis closed the connection ({exc or 'EOF'})"), close=False)

    def fail(self, error: BaseException, close: bool = True) -> None:
        if self.closed is None:
            self.closed = error
            if self.tracking:
                assert self.cache is not None
                self.cache.clear()  # the invalidations still on their way are lost with the connection
            self.tracking = False
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)
        if close and self.transport is not None:
            self.transport.abort()


class WireClient:
    """`hmget` over one pipelined connection to the Redis at `url` (see the module docstring)."""

    def __init__(
        self, url: str, timeout: float = 2.0, connect_timeout: float = 2.0, cache_keys: int = 0,
        max_staleness: float = 0.5,
    ) -> None:  # fmt: skip
        options = parse_url(url)
        if "connection_class" in options and "path" not in options:
            raise ValueError("WireClient speaks plain TCP or a unix socket; use redis-py for rediss://")
        self._path: str | None = options.get("path")
        self._host = str(options.get("host", "localhost"))
        self._port = int(options.get("port", 6379))
        password, username = options.get("password"), options.get("username")
        # AUTH's arguments: the user only when the URL names one (a Redis before 6.0 knows no users).
        self._auth: list[Field] = [v for v in (username, password) if v] if password is not None else []
        self._db = int(options.get("db") or 0)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cache = TrackedReplies(cache_keys) if cache_keys > 0 else None
        self.max_staleness = max_staleness
        self._warned = False
        self._replies: _Replies | None = None
        self._connecting: asyncio.Lock | None = None
        self._watch: asyncio.TimerHandle | None = None

    async def hmget(self, name: Field, keys: Sequence[Field]) -> list[bytes | None]:
        cache = self.cache
        if cache is None:
            plain: list[bytes | None] = await self.execute(pack_command("HMGET", name, *keys))
            return plain
        key, fields = _as_bytes(name), tuple(keys)
        kept = self.kept(key, fields)
        if kept is not None:
            return kept
        cache.misses += 1  # asked of Redis: nothing kept, or nothing kept may be served now
        reply: list[bytes | None] = await self.execute(pack_command("HMGET", name, *keys), keep=(key, fields))
        return reply

    def kept(self, name: Field, keys: Sequence[Field]) -> list[bytes | None] | None:
        """What `hmget(name, keys)` would answer without asking Redis, right now, or None: nothing kept, or
        nothing kept may be served (no tracking connection, or none heard within `max_staleness`). A found
        answer counts as a hit; None is not counted, as the caller has not asked Redis yet."""
        cache, replies = self.cache, self._replies
        if (
            cache is None or replies is None or not replies.tracking or replies.closed is not None
            or time.monotonic() - replies.heard_at > self.max_staleness
        ):  # fmt: skip
            return None
        return cache.get(_as_bytes(name), tuple(keys))

    async def ping(self) -> bool:
        return bool(await self.execute(pack_command("PING")) == b"PONG")

    async def execute(self, command: bytes, keep: Keep = None) -> Any:
        """Send one packed command and wait for its reply, in order with every other (`keep`: cache it)."""
        replies = self._replies
        if replies is None or replies.closed is not None:
            replies = await self._connect()
        return await self._send(replies, command, keep)

    async def aclose(self) -> None:
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.fail(RedisConnectionError("the client was closed"))
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _send(self, replies: _Replies, command: bytes, keep: Keep = None) -> asyncio.Future[Any]:
        assert replies.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        replies.waiting.append((future, time.monotonic(), keep))
        replies.transport.write(command)
        if self._watch is None:
            self._arm()
        return future

    async def _connect(self) -> _Replies:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent lookups wait for the one connection being made
            if self._replies is not None and self._replies.closed is None:
                return self._replies
            replies = await self._open()
            self._replies = replies
            return replies

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        replies: _Replies | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._path is not None:
                    transport, replies = await loop.create_unix_connection(lambda: _Replies(self.cache), self._path)
                else:  # asyncio (and uvloop) set TCP_NODELAY on TCP connections themselves
                    transport, replies = await loop.create_connection(
                        lambda: _Replies(self.cache), self._host, self._port
                    )
                # uvloop may return before it has called `connection_made`: take the transport from here.
                replies.connection_made(transport)
                await self._login(replies)
            return replies
        except BaseException as exc:
            if replies is not None:
                replies.fail(RedisConnectionError("login did not complete"))
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"no connection to Redis within {self.connect_timeout} s") from None
            if isinstance(exc, ResponseError):
                raise AuthenticationError(f"Redis refused the login: {exc}") from None
            if isinstance(exc, OSError):
                raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
            raise

    async def _login(self, replies: _Replies) -> None:
        """AUTH and SELECT as the URL says; with a cache, `HELLO 3` (carrying the AUTH) and CLIENT TRACKING."""
        resp3 = False
        if self.cache is not None:
            # HELLO's AUTH always names a user: Redis's own "default" when the URL names none.
            login = ["AUTH", *(["default"] if len(self._auth) == 1 else []), *self._auth] if self._auth else []
            try:
                await self._send(replies, pack_command("HELLO", 3, *login))
                resp3 = True
            except ResponseError as exc:
                if not str(exc).startswith(NO_RESP3):
                    raise
                self._warn_once("Redis answered HELLO 3 with an error, every lookup asks Redis: %s", exc)
        if self._auth and not resp3:
            await self._send(replies, pack_command("AUTH", *self._auth))
        if self._db:
            await self._send(replies, pack_command("SELECT", self._db))
        if resp3:
            try:
                await self._send(replies, pack_command("CLIENT", "TRACKING", "ON"))
            except ResponseError as exc:  # e.g. an ACL user without CLIENT: lookups work, nothing is kept
                self._warn_once("Redis refused CLIENT TRACKING, every lookup asks Redis: %s", exc)
                return
            replies.tracking = True
            replies.heard_at = time.monotonic()

    def _warn_once(self, message: str, exc: Exception) -> None:
        if not self._warned:
            _log.warning(message, exc)
            self._warned = True

    def _arm(self) -> None:
        self._watch = asyncio.get_running_loop().call_later(self.timeout / 4, self._check)

    def _check(self) -> None:
        """While commands are outstanding: fail the connection whose oldest one is older than `timeout`."""
        self._watch = None
        replies = self._replies
        if replies is None or not replies.waiting:
            return
        if time.monotonic() - replies.waiting[0][1] > self.timeout:
            replies.fail(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))
            return
        self._arm()


def lookup_client(url: str, timeout: float = 2.0, cache_keys: int = 0) -> HashReader:
    """The lookups' Redis client: `WireClient` for `redis://` and `unix://` (keeping the answers of up to
    `cache_keys` keys while Redis tracks them), redis-py for TLS (which keeps nothing)."""
    if url.startswith(("redis://", "unix://")):
        return WireClient(url, timeout=timeout, connect_timeout=timeout, cache_keys=cache_keys)
    client: HashReader = redis_async.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=64, health_check_interval=30
    )
    return client
