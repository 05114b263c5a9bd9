"""Stable local endpoints: the decision (choose_ports) and its file (endpoint_ports)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from adnomaly.local.ports import PortChoice, PortTaken, choose_ports, endpoint_ports, parse_port_flag


def fresh_ports(start: int = 40000) -> Iterator[int]:
    yield from range(start, start + 100)


def choose(stored: dict[str, int], requested: dict[str, int], taken: frozenset[int] = frozenset()) -> PortChoice:
    fresh = fresh_ports()
    return choose_ports(stored, requested, lambda port: port not in taken, lambda: next(fresh))


def test_first_run_chooses_fresh_ports_for_every_endpoint() -> None:
    assert choose({}, {}) == PortChoice({"ingest": 40000, "serving": 40001, "prometheus": 40002}, [])


def test_stored_ports_are_kept() -> None:
    stored = {"ingest": 18080, "serving": 18081, "prometheus": 19090}
    assert choose(stored, {}) == PortChoice(stored, [])


def test_a_requested_port_wins_over_the_stored_one() -> None:
    assert choose({"ingest": 18080, "serving": 18081}, {"ingest": 8080}).ports == {
        "ingest": 8080, "serving": 18081, "prometheus": 40000}  # fmt: skip


def test_a_stored_port_taken_by_another_program_moves_and_says_so() -> None:
    choice = choose({"ingest": 18080, "serving": 18081, "prometheus": 19090}, {}, taken=frozenset({18080}))
    assert choice.ports["ingest"] == 40000 and choice.ports["serving"] == 18081
    assert len(choice.notes) == 1 and "ingest API moved from port 18080 to 40000" in choice.notes[0]
    assert "--port ingest=PORT" in choice.notes[0]


def test_a_requested_port_that_is_taken_is_an_error_not_a_move() -> None:
    with pytest.raises(PortTaken, match="port 8080 for the ingest API"):
        choose({}, {"ingest": 8080}, taken=frozenset({8080}))


def test_one_port_for_two_endpoints_is_refused() -> None:
    with pytest.raises(PortTaken, match="more than one endpoint"):
        choose({}, {"ingest": 8080, "serving": 8080})


def test_unknown_endpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown endpoint grafana"):
        choose({}, {"grafana": 3000})


@pytest.mark.parametrize("text", ["ingest", "ingest=", "ingest=http", "ingest=0", "ingest=70000", "kafka=9092"])
def test_bad_port_flags_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected NAME=PORT"):
        parse_port_flag(text)


def test_the_file_keeps_the_ports_between_runs(tmp_path: Path) -> None:
    first = endpoint_ports(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "ports.json").read_text()) == first.ports
    assert endpoint_ports(tmp_path / "p") == PortChoice(first.ports, [])


def test_the_file_moves_a_port_that_a_listener_holds(tmp_path: Path) -> None:
    first = endpoint_ports(tmp_path / "p").ports
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", first["serving"]))
        listener.listen()
        second = endpoint_ports(tmp_path / "p")
    assert second.ports["serving"] != first["serving"] and second.ports["ingest"] == first["ingest"]
    assert second.notes and json.loads((tmp_path / "p" / "ports.json").read_text()) == second.ports


def test_a_damaged_file_is_chosen_afresh(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text("{not json")
    assert set(endpoint_ports(tmp_path).ports) == {"ingest", "serving", "prometheus"}
