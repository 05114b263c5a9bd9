"""The Flink SQL compiled from declarative features: its semantics, pinned clause by clause."""

from __future__ import annotations

import re
from typing import Any

import pytest
from adnomaly.features.columns import event_columns
from adnomaly.features.record import FeatureRecord
from adnomaly.features.sql import (
    FlinkJob,
    JobOptions,
    aggregate_sql,
    compile_pipeline,
    decode_job,
    plan_digest,
    sql_interval,
)
from adnomaly.plan import events_config
from adnomaly.spec import MetricSpec, parse_pipeline

OPTIONS = JobOptions(checkpoint_dir="file:///var/adnomaly/checkpoints")


def pipeline(features: list[dict[str, Any]], events: dict[str, Any] | None = None, name: str = "shop") -> Any:
    spec: dict[str, Any] = {"features": features}
    if events is not None:
        spec["events"] = events
    return parse_pipeline({"metadata": {"name": name}, "spec": spec})


def feature(name: str = "traffic", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "dimensions": ["geo", "platform"],
        "window": {"type": "tumbling", "size": "1m"},
        "allowedLateness": "30s",
        "metrics": [{"name": "ctr_avg", "agg": "avg", "field": "CTR"}],
    }
    return {**base, **overrides}


def compile_(features: list[dict[str, Any]], options: JobOptions = OPTIONS, **kw: Any) -> FlinkJob:
    return compile_pipeline(pipeline(features, **kw), "kafka:9092", options)


def by_prefix(job: FlinkJob, prefix: str) -> list[str]:
    return [s for s in job.statements if s.startswith(prefix)]


def with_options(statement: str) -> dict[str, str]:
    body = statement.split(") WITH (", 1)[1]
    return dict(re.findall(r"'((?:[^']|'')*)' = '((?:[^']|'')*)'", body))


# -- source --------------------------------------------------------------------------------------------------


def test_source_reads_the_raw_topic_as_json_and_skips_unparsable_records() -> None:
    job = compile_([feature()])
    [source] = by_prefix(job, "CREATE TABLE `raw_events_")
    opts = with_options(source)
    assert opts["connector"] == "kafka"
    assert opts["topic"] == "shop-raw"
    assert opts["properties.bootstrap.servers"] == "kafka:9092"
    assert opts["format"] == "json"
    assert opts["json.ignore-parse-errors"] == "true"
    assert opts["json.fail-on-missing-field"] == "false"
    assert opts["scan.startup.mode"] == "group-offsets"
    assert opts["properties.auto.offset.reset"] == "earliest"
    assert opts["properties.group.id"] in job.consumer_groups


def test_event_time_comes_from_the_schema_time_field_as_text() -> None:
    click = by_prefix(compile_([feature()]), "CREATE TABLE `raw_events_")[0]
    assert "  `timestamp` STRING," in click
    assert "`__rowtime` AS CASE WHEN SUBSTRING(`timestamp` FROM" in click
    probe = by_prefix(
        compile_(
            [feature(dimensions=["region"], metrics=[{"name": "lat", "agg": "p99", "field": "latency_ms"}])],
            events={"schema": "probe"},
        ),
        "CREATE TABLE `raw_events_",
    )[0]
    assert "  `ts` STRING," in probe and "`__rowtime` AS CASE WHEN SUBSTRING(`ts` FROM" in probe


@pytest.mark.parametrize(
    ("lateness", "interval"),
    [
        ("30s", "INTERVAL '30' SECOND"),
        ("90s", "INTERVAL '90' SECOND"),
        ("2m", "INTERVAL '2' MINUTE"),
        ("1500ms", "INTERVAL '1.500' SECOND(1, 3)"),
    ],
)
def test_watermark_is_event_time_minus_allowed_lateness(lateness: str, interval: str) -> None:
    [source] = by_prefix(compile_([feature(allowedLateness=lateness)]), "CREATE TABLE `raw_events_")
    watermark = next(line for line in source.splitlines() if "WATERMARK FOR" in line)
    assert watermark.strip().startswith("WATERMARK FOR `__rowtime` AS CASE WHEN")
    assert f"THEN `__rowtime` - {interval} END" in watermark


def test_no_allowed_lateness_makes_the_newest_event_time_the_watermark() -> None:
    [source] = by_prefix(compile_([feature(allowedLateness="0s")]), "CREATE TABLE `raw_events_")
    watermark = next(line for line in source.splitlines() if "WATERMARK FOR" in line)
    assert watermark.strip().endswith("THEN `__rowtime` END"), watermark


def test_far_future_events_give_no_watermark_and_are_filtered() -> None:
    job = compile_([feature()], events={"schema": "clickstream", "maxFutureSkew": "1h"})
    [source] = by_prefix(job, "CREATE TABLE `raw_events_")
    assert "WHEN `__rowtime` <= LOCALTIMESTAMP + INTERVAL '1' HOUR THEN" in source
    [view] = by_prefix(job, "CREATE TEMPORARY VIEW `events_")
    assert "`__rowtime` <= LOCALTIMESTAMP + INTERVAL '1' HOUR" in view
    assert "`__rowtime` >= TIMESTAMP '2000-01-01 00:00:00.000'" in view
    assert "`__rowtime` IS NOT NULL" in view


def test_one_source_per_distinct_allowed_lateness() -> None:
    job = compile_(
        [
            feature("a", allowedLateness="30s"),
            feature("b", allowedLateness="30s"),
            feature("c", allowedLateness="1m"),
        ]
    )
    sources = by_prefix(job, "CREATE TABLE `raw_events_")
    assert len(sources) == 2
    assert len(set(job.consumer_groups)) == 2
    views = {s.split("`")[1]: s for s in by_prefix(job, "CREATE TEMPORARY VIEW `events_")}
    assert "FROM `distinct_raw_events_lateness_30000ms`" in views["events_a"]
    assert "FROM `distinct_raw_events_lateness_30000ms`" in views["events_b"]
    assert "FROM `distinct_raw_events_lateness_60000ms`" in views["events_c"]


def test_event_time_applies_the_utc_offset_and_truncates_to_milliseconds() -> None:
    [source] = by_prefix(compile_([feature()]), "CREATE TABLE `raw_events_")
    rowtime = next(line for line in source.splitlines() if line.startswith("  `__rowtime` AS "))
    # `Z`/`z`: the local part as is; `+HH:MM`: minus the offset; `-HH:MM`: plus it; anything else: NULL.
    assert (
        "WHEN SUBSTRING(`timestamp` FROM CHAR_LENGTH(`timestamp`) FOR 1) IN ('Z', 'z') THEN TRY_CAST("
        in rowtime
    )
    assert (
        "= '+' THEN TIMESTAMPADD(SECOND, -(CAST(" in rowtime
        and "= '-' THEN TIMESTAMPADD(SECOND, (CAST(" in rowtime
    )
    assert "AS TIMESTAMP(3))" in rowtime and rowtime.rstrip(",").endswith(" END")
    assert "ELSE" not in rowtime  # no other zone form gives a time


# -- duplicates ----------------------------------------------------------------------------------------------


def test_every_window_reads_the_source_deduplicated_by_event_id_keeping_the_first_copy() -> None:
    job = compile_([feature("a"), feature("b"), feature("c", allowedLateness="1m")])
    sources = by_prefix(job, "CREATE TABLE `raw_events_")
    for source in sources:
        assert "  `event_id` STRING," in source
        assert "  `__proctime` AS PROCTIME()," in source
        assert "  `__event_id` AS COALESCE(NULLIF(`event_id`, ''), UUID())," in source
    distinct = {s.split("`")[1]: s for s in by_prefix(job, "CREATE TEMPORARY VIEW `distinct_")}
    assert sorted(distinct) == ["distinct_raw_events_lateness_30000ms", "distinct_raw_events_lateness_60000ms"]
    for name, view in distinct.items():
        # Flink's keep-first-row pattern on processing time, exactly: insert-only, keeps `__rowtime` a time
        # attribute (pinned against the planner in tests/integration/test_flink_features.py).
        assert (
            "ROW_NUMBER() OVER (PARTITION BY `__event_id` ORDER BY `__proctime` ASC) AS `__copy`" in view
        )
        assert f"FROM `{name.removeprefix('distinct_')}`" in view and view.endswith("WHERE `__copy` = 1")
        select = view.split("\n")[1]
        assert "`__rowtime`" in select and "`__copy`" not in select and "`__proctime`" not in select
    for view in by_prefix(job, "CREATE TEMPORARY VIEW `events_"):
        assert "FROM `distinct_raw_events_lateness_" in view
    assert job.statements.index(by_prefix(job, "CREATE TEMPORARY VIEW `distinct_")[0]) < job.statements.index(
        by_prefix(job, "CREATE TEMPORARY VIEW `events_")[0]
    )


def test_an_id_field_comes_first_then_the_derived_event_id() -> None:
    job = compile_([feature()], events={"schema": "clickstream", "idField": "user_id_hash"})
    [source] = by_prefix(job, "CREATE TABLE `raw_events_")
    assert "  `user_id_hash` STRING," in source and "  `event_id` STRING," in source
    assert "`__event_id` AS COALESCE(NULLIF(`user_id_hash`, ''), NULLIF(`event_id`, ''), UUID())" in source
    # an id field that is also a dimension is read once
    job = compile_([feature(dimensions=["geo"])], events={"schema": "clickstream", "idField": "geo"})
    [source] = by_prefix(job, "CREATE TABLE `raw_events_")
    assert source.count("  `geo` STRING") == 1


@pytest.mark.parametrize(
    ("dedup", "features", "ttl_ms"),
    [
        (None, [feature(window={"type": "tumbling", "size": "1m"})], 10 * 60_000),  # the default W
        ("2m", [feature(window={"type": "tumbling", "size": "1m"})], 120_000),
        # raised to the longest size + allowedLateness: no copy can be counted in a window still open
        ("1m", [feature("a"), feature("b", window={"type": "hopping", "size": "5m", "slide": "1m"})], 330_000),
        (None, [feature(window={"type": "tumbling", "size": "1h"}, allowedLateness="2m")], 62 * 60_000),
    ],
)
def test_ids_are_remembered_for_the_dedup_window(dedup: str | None, features: list[Any], ttl_ms: int) -> None:
    events = {"schema": "clickstream", **({"dedupWindow": dedup} if dedup else {})}
    job = compile_(features, events=events)
    assert job.configuration["table.exec.state.ttl"] == f"{ttl_ms} ms"


# -- windows -------------------------------------------------------------------------------------------------


def test_tumbling_window_groups_by_window_and_dimensions() -> None:
    [insert] = compile_([feature(window={"type": "tumbling", "size": "5m"})]).inserts
    assert insert.startswith("INSERT INTO `features_traffic`")
    assert (
        "FROM TABLE(TUMBLE(TABLE `events_traffic`, DESCRIPTOR(`__rowtime`), INTERVAL '5' MINUTE))" in insert
    )
    assert insert.endswith("GROUP BY window_start, window_end, `d_geo`, `d_platform`")


def test_hopping_window_passes_slide_then_size() -> None:
    [insert] = compile_([feature(window={"type": "hopping", "size": "5m", "slide": "1m"})]).inserts
    assert (
        "FROM TABLE(HOP(TABLE `events_traffic`, DESCRIPTOR(`__rowtime`), "
        "INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))" in insert
    )


def metric(agg: str, **kw: Any) -> MetricSpec:
    return MetricSpec(name="m", agg=agg, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "sql"),
    [
        (metric("count"), "CAST(COUNT(*) AS DOUBLE)"),
        (metric("sum", field="CPC"), "CAST(SUM(`x_CPC`) AS DOUBLE)"),
        (metric("avg", field="CPC"), "CAST(AVG(`x_CPC`) AS DOUBLE)"),
        (metric("min", field="CPC"), "CAST(MIN(`x_CPC`) AS DOUBLE)"),
        (metric("max", field="CPC"), "CAST(MAX(`x_CPC`) AS DOUBLE)"),
        (
            metric("ratio", numerator="conversion", denominator="CTR"),
            "SUM(`x_conversion`) / NULLIF(SUM(`x_CTR`), 0.0E0)",
        ),
        (metric("p50", field="CPC"), "PERCENTILE(`x_CPC`, 0.5)"),
        (metric("p90", field="CPC"), "PERCENTILE(`x_CPC`, 0.9)"),
        (metric("p95", field="CPC"), "PERCENTILE(`x_CPC`, 0.95)"),
        (metric("p99", field="CPC"), "PERCENTILE(`x_CPC`, 0.99)"),
    ],
)
def test_aggregation_mapping(spec: MetricSpec, sql: str) -> None:
    assert aggregate_sql(spec) == sql


def test_metrics_row_follows_declaration_order_and_event_count_is_count_star() -> None:
    metrics = [
        {"name": "n", "agg": "count"},
        {"name": "cpc_p95", "agg": "p95", "field": "CPC"},
        {"name": "conv", "agg": "ratio", "numerator": "conversion", "denominator": "CTR"},
    ]
    job = compile_([feature(metrics=metrics)])
    [insert] = job.inserts
    assert (
        "ROW(CAST(COUNT(*) AS DOUBLE), PERCENTILE(`x_CPC`, 0.95), "
        "SUM(`x_conversion`) / NULLIF(SUM(`x_CTR`), 0.0E0))" in insert
    )
    assert "\n       COUNT(*)\nFROM" in insert
    [sink] = by_prefix(job, "CREATE TABLE `features_")
    assert "`metrics` ROW<`n` DOUBLE, `cpc_p95` DOUBLE, `conv` DOUBLE>" in sink


def test_boolean_operands_count_as_one_and_zero() -> None:
    job = compile_(
        [feature(dimensions=["region"], metrics=[{"name": "ok", "agg": "avg", "field": "success"}])],
        events={"schema": "download"},
    )
    [view] = by_prefix(job, "CREATE TEMPORARY VIEW `events_")
    assert "CASE WHEN `success` THEN 1.0E0 WHEN NOT `success` THEN 0.0E0 END AS `x_success`" in view
    assert "  `success` BOOLEAN," in by_prefix(job, "CREATE TABLE `raw_events_")[0]


# -- validity ------------------------------------------------------------------------------------------------


def test_view_keeps_only_events_whose_used_fields_are_valid() -> None:
    metrics = [
        {"name": "ctr", "agg": "avg", "field": "CTR"},
        {"name": "conv", "agg": "sum", "field": "conversion"},
    ]
    [view] = by_prefix(compile_([feature(metrics=metrics)]), "CREATE TEMPORARY VIEW `events_")
    assert "`geo` IS NOT NULL AND REGEXP(`geo`, '^[A-Z]{2}$')" in view
    assert "`platform` IS NOT NULL AND `platform` IN ('android', 'ios', 'web')" in view
    assert "`CTR` IS NOT NULL AND `CTR` >= 0 AND `CTR` <= 1" in view
    assert "FLOOR(`conversion`) = `conversion`" in view  # an int field
    assert "bounce_rate" not in view  # unused fields are not read


def test_custom_json_schema_types_and_checks() -> None:
    schema = {
        "type": "object",
        "required": ["at", "shard", "latency", "ok"],
        "properties": {
            "at": {"type": "string"},
            "shard": {"type": "integer"},
            "tier": {"type": "string", "enum": ["gold", "silver"]},
            "latency": {"type": "number", "minimum": 0, "exclusiveMaximum": 60},
            "ok": {"type": "boolean"},
        },
    }
    custom = parse_pipeline({"metadata": {"name": "shop"}, "spec": {
        "events": {"jsonSchema": schema, "timeField": "at"}, "source": {"generator": {"enabled": False}},
    }})  # fmt: skip
    events = events_config(custom)
    cols = event_columns(events, {"latency", "ok"}, text={"shard", "tier"})
    assert cols["latency"].sql_type == "DOUBLE" and cols["latency"].checks == (
        "`latency` >= 0",
        "`latency` < 60",
    )
    assert cols["ok"].sql_type == "BOOLEAN"
    assert cols["shard"].sql_type == "STRING"  # a dimension keeps the JSON spelling of its value
    assert cols["tier"].checks == ("`tier` IN ('gold', 'silver')",) and not cols["tier"].required
    assert cols["tier"].predicate() == "(`tier` IS NULL OR (`tier` IN ('gold', 'silver')))"


def test_keywords_as_field_names_are_quoted() -> None:
    job = compile_(
        [feature(dimensions=["source", "type"], metrics=[{"name": "n", "agg": "count"}])],
        events={"schema": "signal"},
    )
    [source] = by_prefix(job, "CREATE TABLE `raw_events_")
    assert "  `type` STRING," in source and "  `event_ts` STRING," in source
    assert "`type` AS `d_type`" in by_prefix(job, "CREATE TEMPORARY VIEW `events_")[0]


# -- sink ----------------------------------------------------------------------------------------------------


def test_sink_value_has_the_feature_record_shape() -> None:
    job = compile_([feature()])
    [sink] = by_prefix(job, "CREATE TABLE `features_")
    columns = re.findall(r"^  `(\w+)` ", sink.split(") WITH (")[0], flags=re.M)
    assert columns == ["record_key", *FeatureRecord.__struct_fields__]
    assert "`dimensions` ROW<`geo` STRING, `platform` STRING>" in sink
    assert "`event_count` BIGINT" in sink
    opts = with_options(sink)
    assert opts["topic"] == "shop-features"
    assert opts["key.format"] == "raw" and opts["key.fields"] == "record_key"
    assert opts["value.format"] == "json" and opts["value.fields-include"] == "EXCEPT_KEY"
    assert opts["value.json.encode.ignore-null-fields"] == "false"


def test_record_key_is_feature_dimensions_and_window_end_in_record_key_format() -> None:
    [insert] = compile_([feature()]).inserts
    key_expr = (
        insert.split("\n")[0].removeprefix("INSERT INTO `features_traffic`").strip() or insert.split("\n")[1]
    )
    assert key_expr.startswith("SELECT CONCAT('traffic|', 'geo=', `d_geo`, '|platform=', `d_platform`, '|', ")
    # window bounds as datetime.isoformat() of an aware UTC datetime (what record_key() uses)
    assert "DATE_FORMAT(window_end, 'yyyy-MM-dd''T''HH:mm:ss')" in insert
    assert "'+00:00')" in insert and "CONCAT('.', DATE_FORMAT(window_end, 'SSS'), '000')" in insert


def test_exactly_once_sink_with_stable_unique_transactional_ids() -> None:
    job = compile_([feature("a"), feature("b")])
    sinks = [with_options(s) for s in by_prefix(job, "CREATE TABLE `features_")]
    assert [s["sink.delivery-guarantee"] for s in sinks] == ["exactly-once", "exactly-once"]
    prefixes = [s["sink.transactional-id-prefix"] for s in sinks]
    assert prefixes == ["adnomaly-shop-a", "adnomaly-shop-b"] == job.transactional_id_prefixes
    assert all(int(s["properties.transaction.timeout.ms"]) == 15 * 60 * 1000 for s in sinks)
    assert compile_([feature("a"), feature("b")]).transactional_id_prefixes == prefixes  # deterministic


def test_at_least_once_sink_has_no_transactions() -> None:
    job = compile_([feature()], JobOptions(checkpoint_dir="file:///c", delivery="at-least-once"))
    [sink] = [with_options(s) for s in by_prefix(job, "CREATE TABLE `features_")]
    assert sink["sink.delivery-guarantee"] == "at-least-once"
    assert "sink.transactional-id-prefix" not in sink and job.transactional_id_prefixes == []


# -- job -----------------------------------------------------------------------------------------------------


def test_job_configuration_checkpoints_exactly_once_in_utc() -> None:
    options = JobOptions(
        checkpoint_dir="s3://bucket/shop/checkpoints",
        checkpoint_interval="30s",
        parallelism=3,
        state_backend="rocksdb",
    )
    conf = compile_([feature()], options).configuration
    assert conf["execution.checkpointing.interval"] == "30000 ms"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["execution.checkpointing.dir"] == "s3://bucket/shop/checkpoints"
    assert conf["execution.checkpointing.savepoint-dir"] == "s3://bucket/shop/savepoints"
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["parallelism.default"] == "3"
    assert conf["table.local-time-zone"] == "UTC"
    assert conf["pipeline.name"] == "adnomaly-shop-features"


def test_one_insert_per_feature_and_a_json_round_trip() -> None:
    job = compile_([feature("a"), feature("b", window={"type": "hopping", "size": "2m", "slide": "30s"})])
    assert [i.split("`")[1] for i in job.inserts] == ["features_a", "features_b"]
    assert decode_job(job.to_json()) == job
    assert (
        compile_([feature("a"), feature("b", window={"type": "hopping", "size": "2m", "slide": "30s"})])
        == job
    )


def test_statements_are_balanced() -> None:
    job = compile_([feature(metrics=[{"name": "p", "agg": "p50", "field": "CPC"}])])
    for statement in [*job.statements, *job.inserts]:
        text = re.sub(r"'(?:[^']|'')*'", "''", statement)  # drop string literals
        assert text.count("(") == text.count(")"), statement
        assert text.count("`") % 2 == 0, statement


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="declares no features"):
        compile_([])
    with pytest.raises(ValueError, match="time field `timestamp` cannot be a dimension"):
        compile_([feature(dimensions=["timestamp"])])
    with pytest.raises(ValueError, match="checkpoint_dir must be a URI"):
        JobOptions(checkpoint_dir="/tmp/checkpoints")
    with pytest.raises(ValueError, match="transaction_timeout must be longer"):
        JobOptions(checkpoint_dir="file:///c", checkpoint_interval="20m")


@pytest.mark.parametrize(
    ("ms", "sql"),
    [
        (30_000, "INTERVAL '30' SECOND"),
        (150_000, "INTERVAL '150' SECOND(3)"),
        (120_000, "INTERVAL '2' MINUTE"),
        (7_200_000, "INTERVAL '2' HOUR"),
        (86_400_000, "INTERVAL '1' DAY"),
        (1_500, "INTERVAL '1.500' SECOND(1, 3)"),
        (250, "INTERVAL '0.250' SECOND(1, 3)"),
    ],
)
def test_sql_interval(ms: int, sql: str) -> None:
    assert sql_interval(ms) == sql


def test_sql_interval_rejects_non_positive() -> None:
    with pytest.raises(ValueError):
        sql_interval(0)


def test_plan_digest_follows_the_operator_graph_not_where_it_runs() -> None:
    one = compile_pipeline(pipeline([feature()]), "127.0.0.1:19092", OPTIONS)
    moved = compile_pipeline(pipeline([feature()]), "kafka-0.kafka:9093",
                             JobOptions(checkpoint_dir="s3://b/c", parallelism=2))  # fmt: skip
    assert plan_digest(one) == plan_digest(moved)
    added = compile_pipeline(pipeline([feature(), feature("other")]), "127.0.0.1:19092", OPTIONS)
    assert plan_digest(added) != plan_digest(one)
    planner = one.with_configuration(**{"table.optimizer.reuse-optimize-block-with-digest-enabled": "false"})
    assert plan_digest(planner) != plan_digest(one)


def test_a_local_job_restores_only_its_own_plans_checkpoints(tmp_path: Any) -> None:
    from adnomaly.services.flink import FeaturesJob, _other_checkpoints, latest_checkpoint

    old = FeaturesJob(compile_pipeline(pipeline([feature()]), "127.0.0.1:1", OPTIONS), tmp_path)
    new = FeaturesJob(compile_pipeline(pipeline([feature(), feature("other")]), "127.0.0.1:1", OPTIONS), tmp_path)
    assert old.checkpoint_dir != new.checkpoint_dir and old.checkpoint_dir.parent == tmp_path / "checkpoints"
    taken = old.checkpoint_dir / "0123abcd" / "chk-7"
    taken.mkdir(parents=True)
    (taken / "_metadata").write_bytes(b"")
    assert latest_checkpoint(old.checkpoint_dir) == taken
    assert latest_checkpoint(new.checkpoint_dir) is None  # started afresh from the committed offsets...
    assert _other_checkpoints(tmp_path / "checkpoints")  # ...and it says why
