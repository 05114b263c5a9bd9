"""The ports a local pipeline is reached on, kept stable across restarts of `adnomaly up`.

A client of the ingest API (or a browser on the console, or a Grafana pointed at the local Prometheus) should
not have to rediscover the pipeline each time `adnomaly up` restarts. So each endpoint's port is chosen once,
stored in the state directory (`pipelines/<name>/ports.json`) and reused by the next run on the same state
directory; `--port NAME=PORT` sets one explicitly (and is stored, so it sticks).

What happens when the stored port is taken by another program is a decision, not an accident: an explicit
port that is taken is an error (the user asked for exactly that port), while a remembered port that is taken
moves to a free one and the run says so, since refusing to start would be worse than a moved endpoint that
is announced. The decision is the pure `choose_ports`; `endpoint_ports` is the thin layer over the file and
the sockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adnomaly.services.base import free_port, port_open

# The endpoints a person or a client connects to; component metrics ports are only Prometheus' business
# and are re-rendered into its scrape config on every run, so they need not be stable.
ENDPOINTS: dict[str, str] = {"ingest": "ingest API", "serving": "serving API and console", "prometheus": "Prometheus"}


class PortTaken(Exception):
    """An explicitly requested port is in use by another program."""


@dataclass(frozen=True)
class PortChoice:
    ports: dict[str, int]
    notes: list[str]  # what moved and why, for the live view


def choose_ports(
    stored: Mapping[str, int], requested: Mapping[str, int], is_free: Callable[[int], bool],
    fresh: Callable[[], int],
) -> PortChoice:  # fmt: skip
    """Each endpoint's port: the requested one (which must be free), else the stored one while it is free, else a
    fresh one (announced in `notes` when it replaces a stored port)."""
    unknown = sorted(set(requested) - set(ENDPOINTS))
    if unknown:
        raise ValueError(f"unknown endpoint {', '.join(unknown)} (known: {', '.join(ENDPOINTS)})")
    ports: dict[str, int] = {}
    notes: list[str] = []
    for name, label in ENDPOINTS.items():
        if name in requested:
            if not is_free(requested[name]):
                raise PortTaken(f"port {requested[name]} for the {label} ({name}) is in use by another program")
            ports[name] = requested[name]
        elif name in stored and is_free(stored[name]):
            ports[name] = stored[name]
        else:
            ports[name] = fresh()
            if name in stored:
                notes.append(f"the {label} moved from port {stored[name]} to {ports[name]}: {stored[name]} is in "
                             f"use by another program (set one with --port {name}=PORT)")  # fmt: skip
    taken_twice = sorted({p for p in ports.values() if list(ports.values()).count(p) > 1})
    if taken_twice:
        raise PortTaken(f"port {taken_twice[0]} is given to more than one endpoint: {ports}")
    return PortChoice(ports, notes)


def endpoint_ports(pipeline_dir: Path, requested: Mapping[str, int] | None = None) -> PortChoice:
    """The ports of the pipeline whose state is `pipeline_dir`, chosen and written back to its ports.json."""
    path = pipeline_dir / "ports.json"
    stored = _read(path)
    choice = choose_ports(stored, requested or {}, lambda port: not port_open(port), free_port)
    pipeline_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(choice.ports, indent=2, sort_keys=True) + "\n")
    return choice


def _read(path: Path) -> dict[str, int]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: choose afresh rather than refuse to start
        return {}
    if not isinstance(document, dict):
        return {}
    return {k: v for k, v in document.items() if k in ENDPOINTS and isinstance(v, int) and 0 < v < 65536}


def parse_port_flag(text: str) -> tuple[str, int]:
    """`ingest=8080` → ("ingest", 8080), for `--port`."""
    name, sep, value = text.partition("=")
    if not sep or name not in ENDPOINTS or not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"expected NAME=PORT with NAME one of {', '.join(ENDPOINTS)} and 1 ≤ PORT ≤ 65535, "
                         f"not {text!r}")  # fmt: skip
    return name, int(value)
