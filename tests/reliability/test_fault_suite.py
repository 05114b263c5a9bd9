"""Nothing lost, nothing duplicated, whatever breaks: the whole local pipeline under load while a seeded
chaos driver kills and restarts every component and service and cuts the lake's S3 endpoint.

One run (a few minutes) carries all the assertions: starting the pipeline alone (Kafka, Flink) takes a
minute on a 2-core machine.
"""

from __future__ import annotations

from typing import Any

import pytest
from adnomaly.reliability.run import RunSettings, run_reliability
from adnomaly.reliability.schedule import ALL_TARGETS, build_schedule

from tests.reliability.conftest import env_number

MINUTES = env_number("ADNOMALY_RELIABILITY_MINUTES", 2.5)
SEED = int(env_number("ADNOMALY_RELIABILITY_SEED", 1))
FAULTS = int(env_number("ADNOMALY_RELIABILITY_FAULTS", len(ALL_TARGETS)))
RATE = env_number("ADNOMALY_RELIABILITY_RATE", 2000)

pytestmark = pytest.mark.timeout(int(MINUTES * 60 * 4 + 900))


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    # The services' state goes to a fresh temporary directory (not pytest's 0700 tmp tree: PostgreSQL runs
    # as the `postgres` user when tests run as root), removed afterwards.
    return run_reliability(RunSettings(minutes=MINUTES, seed=SEED, faults=FAULTS, rate=RATE), say=print)


def test_every_acknowledged_event_is_stored_exactly_once(result: dict[str, Any]) -> None:
    assert result["events"] >= MINUTES * 60 * RATE * 0.8, result
    assert result["lost"] == 0, (result["lost_examples"], result)
    # ...also the ids a client re-sent on purpose: one row in PostgreSQL and one in the lake (the features
    # test below recomputes the windows from the lake, so a re-send Flink counted twice is a mismatch there)
    assert result["resent"] > 0, result
    assert result["duplicated"] == 0, (result["duplicated_examples"], result)
    assert result["unexpected"] == 0, result
    assert result["not_drained"] == [], result


def test_features_recomputed_from_the_lake_equal_postgres_and_redis(result: dict[str, Any]) -> None:
    features = result["features"]
    assert features["windows_expected"] > 0 and features["redis_entities"] > 0, features
    assert features["ok"], features


def test_every_fault_was_injected_and_recovered_from_without_help(result: dict[str, Any]) -> None:
    schedule = build_schedule(SEED, MINUTES * 60, FAULTS)
    assert [(f["target"], f["at_s"] >= a.at_s) for f, a in zip(result["faults"], schedule, strict=True)] == [
        (a.target, True) for a in schedule
    ]
    assert result["kills"] == FAULTS
    if len(ALL_TARGETS) <= FAULTS:
        assert {f["target"] for f in result["faults"]} == set(ALL_TARGETS)
    assert all(f["recovery_s"] is not None for f in result["faults"]), result["faults"]
    assert result["max_recovery_s"] is not None and result["max_recovery_s"] < 300
