"""`adnomaly.bench.open_loop`: reading vegeta's results (the attack itself runs in
tests/integration/test_bench_online.py against the real API)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from adnomaly.bench.open_loop import _posix, parse_results


def _line(seq: int, *, code: int = 200, latency_ns: int = 1_500_000, body: bytes = b"{}", error: str = "") -> str:
    return json.dumps({
        "attack": "", "seq": seq, "code": code, "timestamp": "2026-12-07T02:51:45.679318288Z",
        "latency": latency_ns, "bytes_out": 0, "bytes_in": len(body), "error": error,
        "body": base64.b64encode(body).decode(), "method": "GET", "url": f"http://127.0.0.1:1/x{seq}",
    })  # fmt: skip


def test_results_come_back_in_the_order_vegeta_began_them_with_their_latency_body_and_url() -> None:
    hits = parse_results([_line(2, body=b'{"a":2}'), "", _line(0, code=503, error="503 Service Unavailable"),
                          _line(1, latency_ns=250_000)])  # fmt: skip
    assert [hit.seq for hit in hits] == [0, 1, 2]
    assert [hit.url for hit in hits] == ["http://127.0.0.1:1/x0", "http://127.0.0.1:1/x1", "http://127.0.0.1:1/x2"]
    assert hits[0].status == 503 and hits[0].error == "503 Service Unavailable"
    assert hits[1].seconds == 0.00025 and hits[2].body == b'{"a":2}'


def test_go_timestamps_keep_their_nanoseconds_to_the_microsecond() -> None:
    expected = datetime(2026, 12, 7, 2, 51, 45, tzinfo=UTC).timestamp() + 0.679318288
    assert abs(_posix("2026-12-07T02:51:45.679318288Z") - expected) < 1e-6
    assert _posix("2026-12-07T02:51:45Z") == datetime(2026, 12, 7, 2, 51, 45, tzinfo=UTC).timestamp()
    assert abs(_posix("2026-12-07T03:51:45.5+01:00") - (expected - 0.179318288)) < 1e-6
