"""uvicorn's HTTP protocol, answering a feature lookup whose answer is at hand without an ASGI request cycle.

Why: with the Redis replies kept in the process (`adnomaly.serving.tracked_replies`), 95 % of lookups need no
I/O at all, and what a lookup cost was the server around it. Under `adnomaly bench online --rate 2000`
(2026-12-07, steal 0 %), uvicorn + uvloop + httptools answering constant bytes from a bare ASGI app cost
65-68 µs of CPU per request, a bare asyncio protocol on the same loop and parser doing the same 21-23 µs,
with p99 0.68-0.82 ms against 0.46-0.66 ms. The difference is uvicorn's per-request machinery: the ASGI
scope dict (and a copy of the app state), a `RequestResponseCycle` with its `asyncio.Event`, an asyncio
task per request, two `send` messages with their header checks, two transport writes. A lookup answered
from a kept reply needs none of it: everything it needs is in the parser's callbacks.

So `protocol_answering(at_hand)` subclasses uvicorn's `HttpToolsProtocol` and, when the request line and
headers are complete, asks `at_hand(view, query_string)` (`FeatureLookups.at_hand`) for the answer. When it
has one, the answer is written at the end of the message with the exact bytes uvicorn would have written
(status line, uvicorn's default headers such as `date`, content-length, content-type, body), and
`on_response_complete` then does what uvicorn does after every response (request count, reading resumed,
the next pipelined request started or the keep-alive timer armed). Everything else is uvicorn's and the
app's, unchanged: the request goes through `super()` as if this class did not exist, with two differences
that hold for every request: uvicorn's scope is made only once the fast path has declined the request, and
the keep-alive timer is one per connection instead of one per request (see `_unset_keepalive_if_required`).
The ASGI path answers every request this fast path cannot answer exactly as it would:
  - another method than GET, a path that is not `/v1/features/<one segment>`, a `root_path`;
  - a request with a body (content-length or transfer-encoding), `Expect: 100-continue`, an upgrade;
  - a connection that will not stay open (HTTP/1.0 without keep-alive, `Connection: close`): the ASGI path
    adds `connection: close` and closes;
  - a request behind another still being answered (pipelining keeps the order: it queues as uvicorn queues
    it), a transport whose write buffer is full (the ASGI path waits for it to drain; a client that sends
    and never reads must not grow our buffer), uvicorn's concurrency limit or access log configured;
  - anything `at_hand` does not answer (a bad request, a reply Redis must give), or an exception it raises
    (logged; the ASGI path then answers, with its 500 if it fails again).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from adnomaly.serving.features import JSON_TYPE, lookup_view

_log = logging.getLogger("adnomaly.serving")

# (view, raw query string) → (status, JSON payload), or None when the ASGI path must answer.
AtHand = Callable[[str, bytes], tuple[int, bytes] | None]
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class AnswerAtHand(HttpToolsProtocol):
    """`HttpToolsProtocol` that answers lookups `at_hand` in its parser callbacks (see the module docstring)."""

    at_hand: AtHand

    def on_message_begin(self) -> None:
        # What uvicorn's on_message_begin resets, but not its scope (a dict and a copy of the app state): that
        # is made in on_headers_complete, for the requests the ASGI path answers.
        self.url = b""
        self.headers = []
        self.expect_100_continue = False
        self._answer: bytes | None = None

    def on_headers_complete(self) -> None:
        answer = self._answer_now()
        if answer is not None:
            self._answer = answer
            return
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect_100_continue
        self.headers = self.scope["headers"] = headers
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None:
            super().on_message_complete()
            return
        self._answer = None
        self.transport.write(answer)
        self.on_response_complete()

    # uvicorn cancels a connection's keep-alive timer whenever data arrives and arms a new one (`call_later`)
    # after every response: two timer handles per request, 7-9 us of the 43 per request of this protocol
    # answering constant bytes (`--rate 2000`, alternated runs). Here one timer stays armed while requests come:
    # data arriving marks the connection busy, a response notes when it went idle, and the timer, when it
    # fires, closes a connection idle for `timeout_keep_alive` or re-arms itself for when it will have been.
    # As before, a connection is never closed for being idle while a request on it is being answered.
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since: float | None = None

    def on_response_complete(self) -> None:
        # uvicorn's, but for how the keep-alive timer is armed.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = now = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(now + self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: the response being made arms the timer again
        due = idle_since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()
        else:
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_due)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _answer_now(self) -> bytes | None:
        """The whole HTTP response when this request may be answered here and now, else None."""
        parser = self.parser
        if (
            parser.get_method() != b"GET" or self.expect_100_continue or parser.should_upgrade()
            or parser.get_http_version() == "1.0" or not parser.should_keep_alive()
            or (self.cycle is not None and not self.cycle.response_complete) or self.pipeline
            or self.flow.write_paused or self.transport.is_closing()
            or self.limit_concurrency is not None or self.access_log or self.root_path
            or any(name in _BODY_HEADERS for name, _ in self.headers)
        ):  # fmt: skip
            return None
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)  # the decoded path, as uvicorn puts it in the scope
        view = lookup_view(path)
        if view is None:
            return None
        try:
            found = self.at_hand(view, url.query or b"")
        except Exception:
            _log.exception("a lookup failed before reaching the ASGI app, which answers it instead")
            return None
        if found is None:
            return None
        status, payload = found
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: %d\r\n%s: %s\r\n\r\n" % (len(payload), *JSON_TYPE), payload]
        return b"".join(head)


def protocol_answering(at_hand: AtHand) -> type[AnswerAtHand]:
    """The protocol class to give `uvicorn.Config(http=…)`: `AnswerAtHand` asking `at_hand`."""
    return type("AnswerAtHandProtocol", (AnswerAtHand,), {"at_hand": staticmethod(at_hand)})
