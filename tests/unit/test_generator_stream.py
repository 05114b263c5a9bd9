"""The generator's pure core: reproducible bytes, ids, event times, keys, codec-valid events, invalid rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from adnomaly.config import ComponentConfig
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.events.schemas import BUILTIN_SCHEMAS, SCHEMA_NAMES
from adnomaly.generator import EventStream, GeneratorSettings, ScheduleSettings
from adnomaly.generator.ids import MAX_SEQUENCE, event_id, id_prefix
from adnomaly.generator.stream import MIN_EVENT_BYTES
from adnomaly.plan import Endpoints, plan
from adnomaly.spec import parse_pipeline

START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SHORT_SCHEDULE = ScheduleSettings(first_after_s=5, every_s=10, duration_s=4)
SCENARIOS = {
    "clickstream": ("clickFraudBurst", "brokenCampaign", "malformedStorm"),
    "signal": ("malformedStorm",),
    "probe": ("probeLatencySpike", "malformedStorm"),
    "download": ("regionalOutage", "malformedStorm"),
}


def settings(schema: str = "clickstream", **overrides: object) -> GeneratorSettings:
    values: dict[str, object] = {"schema": schema, "seed": 7, "rate": 200.0, "start": START}
    values.update(overrides)
    return GeneratorSettings(**values)  # type: ignore[arg-type]


def values(s: GeneratorSettings, n: int) -> list[bytes]:
    return [e.value for e in EventStream(s).take(n)]


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_same_seed_and_start_give_identical_bytes(schema: str) -> None:
    s = settings(schema, invalid_rate=0.2, scenarios=SCENARIOS[schema], schedule=SHORT_SCHEDULE)
    first, second = EventStream(s).take(3000), EventStream(s).take(3000)  # 15 s: covers scenario windows
    assert first == second
    assert len({e.value for e in first}) > 2900  # not a constant stream


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_another_seed_or_start_gives_other_events(schema: str) -> None:
    base = values(settings(schema), 500)
    other_seed = values(settings(schema, seed=8), 500)
    later = values(settings(schema, start=START + timedelta(hours=1)), 500)
    assert sum(a != b for a, b in zip(base, other_seed, strict=True)) > 490
    assert sum(a != b for a, b in zip(base, later, strict=True)) > 490


def test_take_continues_where_it_stopped() -> None:
    stream = EventStream(settings())
    parts = stream.take(100) + stream.take(150)
    assert [e.seq for e in parts] == list(range(250))
    assert [e.value for e in parts] == values(settings(), 250)


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_every_valid_event_passes_the_codec_with_its_id_time_and_key(schema: str) -> None:
    s = settings(schema, rate=50.0, scenarios=SCENARIOS[schema], schedule=SHORT_SCHEDULE)
    codec = codec_for(schema=schema, max_event_bytes=MIN_EVENT_BYTES)  # the smallest limit allowed
    decoder = msgspec.json.Decoder(BUILTIN_SCHEMAS[schema].struct)
    dims = BUILTIN_SCHEMAS[schema].dimensions
    prefix = id_prefix(s.seed, int(START.timestamp() * 1_000_000))
    events = [e for e in EventStream(s).take(2000) if e.malformed is None]  # storms spoil some
    assert len(events) > 1500  # 40 s of simulated time: normal traffic and scenarios
    for event in events:
        stored = codec.decode(event.value)
        assert stored.event_id == event_id(prefix, event.seq)
        assert stored.event_time == START + timedelta(seconds=event.seq / 50.0)
        assert event.time_us == int(stored.event_time.timestamp() * 1_000_000)
        typed = decoder.decode(event.value)
        assert event.key == "|".join(str(getattr(typed, d)) for d in dims).encode()


def test_malformed_storm_only_spoils_events_inside_its_window() -> None:
    s = settings("probe", rate=50.0, scenarios=("malformedStorm",), schedule=SHORT_SCHEDULE)
    stream = EventStream(s)
    for event in stream.take(2000):
        label, _ = stream.schedule.active(event.time_us)
        if event.malformed is not None:
            assert label is not None and label.scenario == "malformedStorm"


def test_event_ids_are_unique_uuids_namespaced_by_seed_and_start() -> None:
    ids = [codec_for(schema="clickstream").decode(v).event_id for v in values(settings(), 2000)]
    assert len(set(ids)) == 2000
    assert all(uuid.UUID(i).version == 8 for i in ids[:10])
    assert id_prefix(7, 1) != id_prefix(8, 1) != id_prefix(7, 2)
    with pytest.raises(ValueError):
        event_id(id_prefix(7, 1), MAX_SEQUENCE + 1)


def test_signal_events_carry_the_same_ids_as_uuid() -> None:
    s = settings("signal")
    prefix = id_prefix(s.seed, int(START.timestamp() * 1_000_000))
    for event in EventStream(s).take(50):
        assert codec_for(schema="signal").decode(event.value).event_id == event_id(prefix, event.seq)


def test_event_time_is_start_plus_sequence_over_rate_at_any_rate() -> None:
    for rate in (1.0, 3.0, 50_000.0):
        events = EventStream(settings(rate=rate)).take(5)
        start_us = int(START.timestamp() * 1_000_000)
        assert [e.time_us for e in events] == [start_us + int(i * 1_000_000 / rate) for i in range(5)]


def test_keys_follow_configured_dimensions() -> None:
    codec = codec_for(schema="download")
    for event in EventStream(settings("download", dimensions=("content_id",))).take(100):
        payload = msgspec.json.decode(codec.decode(event.value).payload)
        assert event.key == payload["content_id"].encode()
    assert all(e.key is None for e in EventStream(settings("download", dimensions=())).take(10))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_invalid_rate_fraction_is_respected(rate: float) -> None:
    n = 4000
    events = EventStream(settings(invalid_rate=rate)).take(n)
    invalid = sum(e.malformed is not None for e in events)
    tolerance = 4 * (n * rate * (1 - rate)) ** 0.5  # four standard deviations of a binomial count
    assert abs(invalid - n * rate) <= tolerance
    codec = codec_for(schema="clickstream")
    for e in events:
        if e.malformed is None:
            codec.decode(e.value)
        else:
            with pytest.raises(InvalidEvent):
                codec.decode(e.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schema": "custom"}, "built-in schemas only"),
        ({"rate": 0.0}, "rate must be positive"),
        ({"invalid_rate": 1.5}, "invalid_rate must be within 0..1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"max_event_bytes": 512}, "too small for generated events"),
        ({"start": datetime(2025, 6, 1)}, "timezone-aware"),
        ({"dimensions": ("geo", "nope")}, "not fields of schema clickstream"),
    ],
)
def test_bad_settings_are_rejected_clearly(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_settings_come_from_a_planned_component_config() -> None:
    pipeline = parse_pipeline({
        "metadata": {"name": "probes"},
        "spec": {
            "events": {"schema": "probe", "maxEventBytes": 4096},
            "source": {"generator": {"eventsPerSecond": 250, "seed": 3, "invalidRate": 0.05,
                                     "scenarios": ["probeLatencySpike"]}},
        },
    })  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap="127.0.0.1:9092")).components["generator"].config
    config = ComponentConfig.model_validate_json(config.to_json())
    s = GeneratorSettings.from_config(config, START)
    assert (s.schema, s.seed, s.rate, s.invalid_rate, s.scenarios) == ("probe", 3, 250.0, 0.05, ("probeLatencySpike",))
    assert s.max_event_bytes == 4096 and s.key_dimensions == ("region", "node_id")
    assert GeneratorSettings.from_config(config, START, rate=9.0).rate == 9.0


def planned_generator_config(generator: dict[str, object]) -> ComponentConfig:
    pipeline = parse_pipeline({"metadata": {"name": "ads"}, "spec": {"source": {"generator": generator}}})
    config = plan(pipeline, Endpoints(kafka_bootstrap="127.0.0.1:9092")).components["generator"].config
    return ComponentConfig.model_validate_json(config.to_json())


def test_the_scenario_schedule_comes_from_the_spec() -> None:
    config = planned_generator_config({
        "scenarios": ["clickFraudBurst"], "scenarioSchedule": {"firstAfter": "100s", "every": "10m", "duration": "20s"},
    })  # fmt: skip
    s = GeneratorSettings.from_config(config, START)
    assert s.schedule == ScheduleSettings(first_after_s=100.0, every_s=600.0, duration_s=20.0)
    start, end, _ = EventStream(s).schedule.window(0)
    start_s = (start - EventStream(s).start_us) / 1e6
    assert 100.0 <= start_s <= 100.0 + 600.0 / 4 and (end - start) / 1e6 == 20.0


def test_the_spec_default_schedule_is_the_generator_default() -> None:
    assert GeneratorSettings.from_config(planned_generator_config({}), START).schedule == ScheduleSettings()


def test_the_generator_command_line_overrides_the_planned_schedule() -> None:
    from adnomaly.generator.__main__ import build_parser, schedule_overrides

    config = planned_generator_config({"scenarioSchedule": {"firstAfter": "100s", "every": "10m", "duration": "20s"}})
    args = build_parser().parse_args(["--scenario-duration", "5"])
    assert schedule_overrides(args, config) == {"schedule": ScheduleSettings(100.0, 600.0, 5.0)}
    assert schedule_overrides(build_parser().parse_args([]), config) == {}
