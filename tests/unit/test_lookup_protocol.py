"""The serving API's HTTP protocol (`adnomaly.serving.lookup_protocol`): lookups at hand answered in the parser's
callbacks with the bytes uvicorn's ASGI path would write, everything else left to uvicorn and the app.

Each test runs a real uvicorn server (uvloop, the protocol under test) on a loopback port in a thread and
speaks raw HTTP/1.1 to it over a socket, so what is checked is the bytes on the wire."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from adnomaly.serving.lookup_protocol import protocol_answering
from starlette.types import Receive, Scope, Send

PAYLOAD = b'{"view":"v","entity":{"a":"1"}}'
LOOKUP = b"GET /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\n\r\n"


@dataclass
class Served:
    port: int
    asked: list[tuple[str, bytes]] = field(default_factory=list)  # what at_hand was asked
    reached_app: list[str] = field(default_factory=list)  # "METHOD path?query" of what the app answered
    at_hand: Callable[[str, bytes], tuple[int, bytes] | None] = lambda _view, _query: (200, PAYLOAD)
    # uvicorn logs access when its access logger has handlers, as pytest's log capture gives every logger here;
    # the API runs without (`access_log=False`), so the tests do too unless they say otherwise.
    access_log: bool = False


def _app(served: Served) -> Callable[..., object]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        assert (b"host", b"t") in scope["headers"], "the request's headers reach the app"
        served.reached_app.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
        elif scope["path"] == "/slower":  # longer than the keep-alive timeout (1 s)
            await asyncio.sleep(1.5)
        body = PAYLOAD if scope["path"].startswith("/v1/features/") else scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
def served() -> Iterator[Served]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = Served(port)

    def at_hand(view: str, query: bytes) -> tuple[int, bytes] | None:
        served.asked.append((view, query))
        return served.at_hand(view, query)

    class Protocol(protocol_answering(at_hand)):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.access_log = served.access_log

    config = uvicorn.Config(
        _app(served), host="127.0.0.1", port=port, loop="uvloop", http=Protocol,
        lifespan="off", log_level="warning", access_log=False, server_header=False, timeout_keep_alive=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield served
    server.should_exit = True
    thread.join(10)


def _connect(served: Served) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _responses(connection: socket.socket, count: int) -> list[bytes]:
    """`count` whole responses (each with a content-length) read from `connection`."""
    data, found = b"", []
    while len(found) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"content-length: (\d+)", data[:head_end]).group(1))  # type: ignore[union-attr]
            end = head_end + 4 + length
            if len(data) >= end:
                found.append(data[:end])
                data = data[end:]
                continue
        chunk = connection.recv(65536)
        assert chunk, f"connection closed after {len(found)} of {count} responses"
        data += chunk
    assert data == b"", "more than the responses asked for"
    return found


def _without_date(response: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"", response)


def test_a_lookup_at_hand_gets_the_bytes_the_asgi_path_writes_without_reaching_the_app(served: Served) -> None:
    with _connect(served) as connection:
        connection.sendall(LOOKUP)
        fast = _responses(connection, 1)[0]
        served.at_hand = lambda _view, _query: None  # now the app answers the same lookup
        connection.sendall(LOOKUP)
        slow = _responses(connection, 1)[0]
    assert served.reached_app == ["GET /v1/features/v?a=1"]  # the second one only
    assert served.asked == [("v", b"a=1"), ("v", b"a=1")]
    assert re.search(rb"\r\ndate: ", fast), "uvicorn's default headers are written too"
    assert _without_date(fast) == _without_date(slow)
    assert _without_date(fast) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (len(PAYLOAD), PAYLOAD)
    )


def test_the_status_and_the_decoded_view_reach_the_answer(served: Served) -> None:
    served.at_hand = lambda view, _query: (404, b'{"detail":"%s"}' % view.encode())
    with _connect(served) as connection:
        connection.sendall(b"GET /v1/features/a%20b?x=%41 HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = _responses(connection, 1)[0]
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n") and answer.endswith(b'{"detail":"a b"}')
    assert served.asked == [("a b", b"x=%41")]  # the path decoded as uvicorn decodes it; the query raw
    assert served.reached_app == []


def test_many_lookups_on_one_connection_in_one_write_are_answered_in_order(served: Served) -> None:
    served.at_hand = lambda _view, query: (200, query)
    with _connect(served) as connection:
        connection.sendall(b"".join(b"GET /v1/features/v?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in range(50)))
        answers = _responses(connection, 50)
    assert [answer.rsplit(b"\r\n\r\n", 1)[1] for answer in answers] == [b"n=%d" % n for n in range(50)]
    assert served.reached_app == []


def test_a_lookup_behind_a_request_still_being_answered_waits_its_turn(served: Served) -> None:
    with _connect(served) as connection:
        connection.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" + LOOKUP + LOOKUP)
        first, second, third = _responses(connection, 3)
        assert first.endswith(b"/slow") and second.endswith(PAYLOAD) and third.endswith(PAYLOAD)
        # Both lookups arrived while /slow was being answered: queued the ASGI way, in order.
        assert served.reached_app == ["GET /slow?"] + ["GET /v1/features/v?a=1"] * 2 and served.asked == []
        connection.sendall(LOOKUP)  # nothing in flight any more: at hand again
        assert _responses(connection, 1)[0].endswith(PAYLOAD)
    assert len(served.reached_app) == 3 and served.asked == [("v", b"a=1")]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HEAD /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\ncontent-length: 2\r\n\r\n{}",
        b"GET /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\ncontent-length: 2\r\n\r\n{}",
        b"GET /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"GET /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        b"GET /v1/features/ HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /v1/features/v/w HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /v1/featuresv HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n",
    ],
    ids=["head", "post", "get-with-body", "chunked", "expect-continue", "no-view", "two-segments", "prefix-only",
         "other-path"],
)
def test_what_the_fast_path_cannot_answer_exactly_reaches_the_app(served: Served, request_bytes: bytes) -> None:
    with _connect(served) as connection:
        connection.sendall(request_bytes)
        if b"HEAD" in request_bytes:  # no body follows a HEAD answer's content-length
            answer = connection.recv(65536)
        elif b"Expect" in request_bytes:  # the app's receive() sends the interim 100 first
            interim = connection.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"), socket.MSG_WAITALL)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            answer = _responses(connection, 1)[0]
        else:
            answer = _responses(connection, 1)[0]
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert len(served.reached_app) == 1
    assert served.asked == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/features/v?a=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /v1/features/v?a=1 HTTP/1.0\r\nHost: t\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_a_connection_that_will_close_is_answered_by_the_app_with_connection_close(
    served: Served, request_bytes: bytes
) -> None:
    with _connect(served) as connection:
        connection.sendall(request_bytes)
        answer = _responses(connection, 1)[0]
        assert connection.recv(1) == b"", "closed after the answer"
    assert b"\r\nconnection: close\r\n" in answer
    assert served.reached_app == ["GET /v1/features/v?a=1"] and served.asked == []


def test_an_exception_in_at_hand_is_logged_and_the_app_answers(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_view: str, _query: bytes) -> tuple[int, bytes] | None:
        raise RuntimeError("a bug")

    served.at_hand = broken
    with _connect(served) as connection:
        connection.sendall(LOOKUP + LOOKUP)
        answers = _responses(connection, 2)
    assert all(answer.endswith(PAYLOAD) for answer in answers)
    assert served.reached_app == ["GET /v1/features/v?a=1"] * 2
    assert "a lookup failed before reaching the ASGI app" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_a_busy_one_is_not(served: Served) -> None:
    with _connect(served) as busy, _connect(served) as idle:
        idle.sendall(LOOKUP)
        _responses(idle, 1)
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # twice the timeout (1 s), one lookup every 0.2 s
            busy.sendall(LOOKUP)
            _responses(busy, 1)
            time.sleep(0.2)
        idle.settimeout(1)
        assert idle.recv(1) == b"", "the idle connection was closed"
        busy.sendall(LOOKUP)
        assert _responses(busy, 1)[0].endswith(PAYLOAD)


def test_a_request_answered_for_longer_than_the_keep_alive_timeout_keeps_its_connection(served: Served) -> None:
    with _connect(served) as connection:
        connection.sendall(LOOKUP)  # a response: the keep-alive timer runs from here
        _responses(connection, 1)
        time.sleep(0.5)
        connection.sendall(b"GET /slower HTTP/1.1\r\nHost: t\r\n\r\n")  # busy from 0.5 s to 2.0 s
        assert _responses(connection, 1)[0].endswith(b"/slower")
        connection.sendall(LOOKUP)
        assert _responses(connection, 1)[0].endswith(PAYLOAD)
        connection.settimeout(2)
        started = time.monotonic()
        assert connection.recv(1) == b""
        assert 0.8 < time.monotonic() - started < 1.6, "idle for the timeout after the last response, then closed"


def test_with_an_access_log_every_request_reaches_the_app_to_be_logged(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.access_log = True
    with _connect(served) as connection, caplog.at_level(logging.INFO, "uvicorn.access"):
        connection.sendall(LOOKUP)
        assert _responses(connection, 1)[0].endswith(PAYLOAD)
    assert served.reached_app == ["GET /v1/features/v?a=1"] and served.asked == []
    assert '"GET /v1/features/v?a=1 HTTP/1.1" 200' in caplog.text
