"""Open-loop HTTP load, as wrk2 sends it, with vegeta: a load generator in Go, pinned and built from its Go
module (`adnomaly.services.vegeta`).

Why not the bench's own asyncio client, which `adnomaly bench online --rate` used before: on two cores the
client shares the CPUs with the API and Redis, and a Python client spent ~200 µs of CPU per lookup of its own
(py-spy: 39 % of a core at 2,000/s), in the same event loop that reads the answers, so its own queue read as
the API's latency. Against the same serving code, alternated, it measured p50 0.87 to 1.02 ms where vegeta
measured 0.56 to 0.61 ms (bench/README.md). vegeta is what wrk2 is in C: each request is sent when it is
due (`-rate`, one target after another from a file, read lazily), a new worker is started whenever every
worker is busy, and a request's latency runs from when it was handed to a worker (about when it was due) to
its last byte; `-max-connections` bounds the keep-alive connections, and a request waiting for one waits
inside its latency.

`attack` returns every request's URL, status, latency and body in the order vegeta began them (`seq`; a
worker takes its sequence number and then reads the next target, so with several workers `seq` and the
target's line can differ by a few: an answer is matched to its request by the URL), so the caller checks
each answer as it did before.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from adnomaly.services.base import ServiceError, run_tool
from adnomaly.services.vegeta import ensure_vegeta

NO_TARGETS_LEFT = "no targets to attack"  # vegeta's ErrNoTargets


@dataclass(frozen=True)
class Hit:
    """One request as vegeta recorded it: `seq` is the order it began in, `seconds` its latency."""

    seq: int
    url: str
    status: int
    seconds: float
    sent_at: float  # POSIX seconds
    body: bytes
    error: str


def parse_results(lines: Sequence[str]) -> list[Hit]:
    """vegeta's results as `vegeta encode --to json` prints them (one JSON object per line), by `seq`."""
    hits = []
    for line in lines:
        if not line.strip():
            continue
        raw = json.loads(line)
        hits.append(
            Hit(
                seq=int(raw["seq"]), url=raw.get("url", ""), status=int(raw["code"]),
                seconds=int(raw["latency"]) / 1e9, sent_at=_posix(raw["timestamp"]),
                body=base64.b64decode(raw.get("body") or ""), error=raw.get("error", ""),
            )
        )  # fmt: skip
    return sorted(hits, key=lambda hit: hit.seq)


def _posix(timestamp: str) -> float:
    """RFC 3339 with nanoseconds (Go's format) → POSIX seconds; Python parses at most microseconds."""
    head, dot, rest = timestamp.partition(".")
    if not dot:
        return datetime.fromisoformat(timestamp).timestamp()
    digits = len(rest) - len(rest.lstrip("0123456789"))
    fraction, zone = rest[:digits], rest[digits:]
    return datetime.fromisoformat(head + zone).timestamp() + float(f"0.{fraction or 0}")


def attack(urls: Sequence[str], rate: float, connections: int, workdir: Path, timeout_s: float = 10.0) -> list[Hit]:
    """GET `urls[n]` at n / `rate` seconds from the start, over at most `connections` keep-alive connections;
    every request's outcome, in the order they began."""
    vegeta = ensure_vegeta()
    targets = workdir / "targets.jsonl"
    results = workdir / "results.bin"
    targets.write_text("".join(json.dumps({"method": "GET", "url": url}) + "\n" for url in urls))
    argv = [
        str(vegeta), "attack", "-format=json", "-lazy", f"-targets={targets}", f"-rate={rate:g}/s",
        "-duration=0",  # until the (lazily read) targets run out: one request per line
        "-keepalive", f"-connections={connections}", f"-max-connections={connections}",
        f"-timeout={timeout_s:g}s", f"-output={results}",
    ]  # fmt: skip
    run_tool(argv, "vegeta attack", timeout=len(urls) / rate + 60)
    encoded = workdir / "results.jsonl"
    run_tool([str(vegeta), "encode", "--to", "json", f"--output={encoded}", str(results)], "vegeta encode",
             timeout=120)  # fmt: skip
    # With `-duration=0` the attack ends on the first request that finds no target left; vegeta records it.
    hits = [hit for hit in parse_results(encoded.read_text().splitlines())
            if not (hit.seq >= len(urls) and hit.error == NO_TARGETS_LEFT)]  # fmt: skip
    if sorted(hit.url for hit in hits) != sorted(urls):
        raise ServiceError(f"vegeta recorded {len(hits)} requests, not the {len(urls)} targets given")
    return hits
