"""`adnomaly anomalies` against the PostgreSQL of a state directory, as `adnomaly up` leaves it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from adnomaly.cli import main
from adnomaly.plan import db_schema_name
from adnomaly.services.postgres import PostgresServer

from tests.integration.anomaly_data import NOW, PIPELINE, SEEDED, before_now, seed


@pytest.fixture
def state_dir(postgres: PostgresServer, tmp_path: Path) -> Path:
    """A state dir whose services/postgres is the shared test server's, with one pipeline in it."""
    seed(postgres.dsn, db_schema_name(PIPELINE))
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "postgres").symlink_to(postgres.state_dir)
    (tmp_path / "pipelines" / PIPELINE / "processor").mkdir(parents=True)
    return tmp_path


def test_open_anomalies_of_the_last_two_hours_as_json(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = before_now(timedelta(hours=2))
    assert main(["anomalies", "--state-dir", str(state_dir), "--open", "--since", since, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = [a for a in SEEDED if a.status == "open" and a.detected_at >= NOW - timedelta(hours=2)]
    assert [a["id"] for a in shown] == [a.id for a in sorted(expected, key=lambda a: a.detected_at, reverse=True)]
    assert shown[0]["key"] == {"geo": "US", "platform": "ios"} and shown[0]["detector"] == "ctr-spike"


def test_a_table_by_default(state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                            ) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "200")  # rich: no ellipsis in a captured (80-column) terminal
    pipeline_file = state_dir / "pipeline.yaml"
    pipeline_file.write_text(f"kind: Pipeline\nmetadata: {{name: {PIPELINE}}}\n"
                             "spec: {events: {schema: clickstream}}\n")
    assert main(["anomalies", "-f", str(pipeline_file), "--state-dir", str(state_dir), "--key", "geo:DE"]) == 0
    out = capsys.readouterr().out
    assert f"anomalies of pipeline {PIPELINE}" in out and "geo=DE, platform=web" in out and "resolved" in out
    assert "geo=US" not in out


@pytest.mark.parametrize(("flags", "named"), [(["--since", "yesterday"], "--since"), (["--limit", "0"], "--limit"),
                                              (["--key", "geo"], "--key")])  # fmt: skip
def test_bad_flags_are_named(state_dir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str) -> None:
    assert main(["anomalies", "--state-dir", str(state_dir), *flags]) == 2
    assert capsys.readouterr().out.startswith(f"{named}:")


def test_without_a_local_postgres_it_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pipelines" / "demo").mkdir(parents=True)
    assert main(["anomalies", "--state-dir", str(tmp_path)]) == 2
    assert "adnomaly up" in capsys.readouterr().out
