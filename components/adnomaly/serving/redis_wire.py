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
"""

from __future__ import annotations

import asyncio
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

Field = str | bytes


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
    """The connection's read side: each parsed reply resolves the oldest outstanding command."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, sent at monotonic)
        self.transport: asyncio.Transport | None = None
        self.closed: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()[0]
                if future.done():  # its caller was cancelled: the reply is dropped, the order kept
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(RedisConnectionError(f"Redis protocol error: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis closed the connection ({exc or 'EOF'})"), close=False)

    def fail(self, error: BaseException, close: bool = True) -> None:
        if self.closed is None:
            self.closed = error
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)
        if close and self.transport is not None:
            self.transport.abort()


class WireClient:
    """`hmget` over one pipelined connection to the Redis at `url` (see the module docstring)."""

    def __init__(self, url: str, timeout: float = 2.0, connect_timeout: float = 2.0) -> None:
        options = parse_url(url)
        if "connection_class" in options and "path" not in options:
            raise ValueError("WireClient speaks plain TCP or a unix socket; use redis-py for rediss://")
        self._path: str | None = options.get("path")
        self._host = str(options.get("host", "localhost"))
        self._port = int(options.get("port", 6379))
        self._login: list[bytes] = []
        if options.get("password") is not None:
            self._login = [pack_command("AUTH", *[v for v in (options.get("username"), options["password"]) if v])]
        if int(options.get("db") or 0):
            self._login.append(pack_command("SELECT", int(options["db"])))
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._replies: _Replies | None = None
        self._connecting: asyncio.Lock | None = None
        self._watch: asyncio.TimerHandle | None = None

    async def hmget(self, name: Field, keys: Sequence[Field]) -> list[bytes | None]:
        reply: list[bytes | None] = await self.execute(pack_command("HMGET", name, *keys))
        return reply

    async def ping(self) -> bool:
        return bool(await self.execute(pack_command("PING")) == b"PONG")

    async def execute(self, command: bytes) -> Any:
        """Send one packed command and wait for its reply, in order with every other."""
        replies = self._replies
        if replies is None or replies.closed is not None:
            replies = await self._connect()
        return await self._send(replies, command)

    async def aclose(self) -> None:
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.fail(RedisConnectionError("the client was closed"))
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _send(self, replies: _Replies, command: bytes) -> asyncio.Future[Any]:
        assert replies.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        replies.waiting.append((future, time.monotonic()))
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
                    transport, replies = await loop.create_unix_connection(_Replies, self._path)
                else:  # asyncio (and uvloop) set TCP_NODELAY on TCP connections themselves
                    transport, replies = await loop.create_connection(_Replies, self._host, self._port)
                # uvloop may return before it has called `connection_made`: take the transport from here.
                replies.connection_made(transport)
                for command in self._login:
                    await self._send(replies, command)
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


def lookup_client(url: str, timeout: float = 2.0) -> HashReader:
    """The lookups' Redis client: `WireClient` for `redis://` and `unix://`, redis-py for TLS."""
    if url.startswith(("redis://", "unix://")):
        return WireClient(url, timeout=timeout, connect_timeout=timeout)
    client: HashReader = redis_async.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=64, health_check_interval=30
    )
    return client
