"""The chaos schedule: a pure, seeded function of (seed, duration, faults)."""

from __future__ import annotations

import itertools

import pytest
from adnomaly.plan import Endpoints, managed_stores, plan
from adnomaly.reliability.chaos import caught_up, processing
from adnomaly.reliability.schedule import ALL_TARGETS, COMPONENT_TARGETS, OUTAGE_TARGETS, build_schedule
from adnomaly.reliability.spec import reliability_pipeline


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    assert build_schedule(7, 180, 10) == build_schedule(7, 180, 10)
    assert build_schedule(7, 180, 10) != build_schedule(8, 180, 10)


@pytest.mark.parametrize("seed", range(20))
def test_faults_are_ordered_inside_the_window_and_never_overlap(seed: int) -> None:
    actions = build_schedule(seed, 180, 12, lead_in_s=10, settle_s=3)
    assert len(actions) == 12
    assert actions[0].at_s >= 10
    for before, after in itertools.pairwise(actions):
        assert before.at_s + before.down_s + 3 <= after.at_s + 1e-6
    last = actions[-1]
    assert last.at_s + last.down_s <= 180


@pytest.mark.parametrize("seed", range(10))
def test_every_target_is_hit_when_there_are_enough_faults(seed: int) -> None:
    actions = build_schedule(seed, 180, len(ALL_TARGETS) + 2)
    assert {a.target for a in actions} == set(ALL_TARGETS)


def test_s3_is_an_outage_the_rest_are_kills_with_bounded_down_time() -> None:
    for action in build_schedule(3, 600, 30):
        if action.target in OUTAGE_TARGETS:
            assert action.kind == "outage" and 4.0 <= action.down_s <= 10.0
        else:
            assert action.kind == "kill" and 0.5 <= action.down_s <= 5.0


def test_fewer_faults_than_targets_draw_from_the_given_targets() -> None:
    actions = build_schedule(1, 120, 3, targets=("processor", "kafka"))
    assert len(actions) == 3 and {a.target for a in actions} <= {"processor", "kafka"}


def test_no_faults_is_an_empty_schedule() -> None:
    assert build_schedule(1, 60, 0) == []


@pytest.mark.parametrize(
    ("duration", "faults", "targets", "message"),
    [
        (60, 10, ALL_TARGETS, "per fault"),
        (60, -1, ALL_TARGETS, "faults must be"),
        (0, 1, ALL_TARGETS, "faults must be"),
        (60, 1, ("processor", "printer"), "subset"),
        (60, 1, (), "subset"),
    ],
)
def test_impossible_requests_are_refused_clearly(
    duration: float, faults: int, targets: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_schedule(1, duration, faults, targets=targets)


def test_caught_up_compares_each_partition_with_slack_for_commit_markers() -> None:
    assert caught_up({0: 10, 1: 5}, {0: 10, 1: 5}, slack=0)
    assert not caught_up({0: 10, 1: 4}, {0: 10, 1: 5}, slack=0)
    assert caught_up({0: 9}, {0: 10}, slack=1)
    assert not caught_up({}, {0: 3}, slack=0)
    assert caught_up({}, {0: 0}, slack=0)  # an empty partition has nothing to catch up with


EXPOSITION = """# HELP adnomaly_consumer_lag Messages behind
# TYPE adnomaly_consumer_lag gauge
adnomaly_consumer_lag{partition="0",topic="t"} 0.0
# TYPE adnomaly_detector_records_total counter
adnomaly_detector_records_total 0.0
adnomaly_detector_records_created 1.7e9
"""


def test_processing_evidence_is_read_from_the_component_metrics() -> None:
    assert processing(EXPOSITION, "adnomaly_consumer_lag", positive=False)
    assert not processing(EXPOSITION, "adnomaly_detector_records_total", positive=True)
    assert processing(EXPOSITION.replace("total 0.0", "total 3.0"), "adnomaly_detector_records_total", True)
    assert not processing("# TYPE adnomaly_consumer_lag gauge\n", "adnomaly_consumer_lag", positive=False)
    assert not processing(EXPOSITION, "adnomaly_consumer", positive=False)


def test_the_suites_pipeline_plans_every_component_the_driver_kills() -> None:
    pipeline = reliability_pipeline(seed=1)
    planned = plan(pipeline, Endpoints(kafka_bootstrap="k:9092", s3_endpoint="http://127.0.0.1:9000"))
    assert set(COMPONENT_TARGETS) <= set(planned.components)
    assert "generator" not in planned.components  # the load driver produces, and records what it produced
    assert {"kafka", "postgres", "redis", "minio"} <= managed_stores(pipeline)
