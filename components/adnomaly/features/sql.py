"""Compile a pipeline's declarative features to the Flink SQL the features job runs. Pure; imports no pyflink.

`compile_pipeline(pipeline, kafka_bootstrap, options)` (or `compile_job` with an explicit KafkaConfig and
EventsConfig) returns a `FlinkJob`: Flink configuration plus SQL statements, serialised with `.to_json()`.
The PyFlink job (flink/job/adnomaly_flink_job.py, in its own environment) only executes them, so
everything that decides semantics lives here and is unit-tested.

Shape of the SQL, per distinct `allowedLateness` L:

- a source table on the raw topic (Kafka connector, JSON format, `json.ignore-parse-errors`: records that
  are not JSON, or whose fields have the wrong JSON type for their column, are skipped; the processor
  dead-letters them). The event-time column `__rowtime` is computed from the schema's time field (an
  RFC 3339 string with any UTC offset, parsed in SQL, truncated to milliseconds, NULL when unparsable), and
  `WATERMARK FOR __rowtime AS __rowtime - L`: bounded out-of-orderness of L. Events whose time is further
  in the future than the schema's `maxFutureSkew` produce no watermark (one such event would otherwise
  push event time forward and make every later event late) and are filtered out, as the processor
  rejects them.

- one deduplicated view of the source (`distinct_<source>`): Flink's keep-first-row deduplication,
  `ROW_NUMBER() OVER (PARTITION BY __event_id ORDER BY __proctime ASC) = 1`, keyed by the event id (the
  schema's `idField`, else `event_id`: the ingest API writes every event with its id, derived ones included;
  a record without one gets a random key and is never merged). See "Duplicates" below.

and per feature:

- a view with the valid events of the deduplicated source (time in range, every used field valid, see
  `columns`), its dimensions and metric operands;
- one windowing query: `TUMBLE` or `HOP` over the view, grouped by `window_start, window_end` and the
  dimensions, one aggregate per metric (count → COUNT(*), sum/avg/min/max → SUM/AVG/MIN/MAX, ratio →
  SUM(num) / NULLIF(SUM(den), 0), pNN → PERCENTILE(x, 0.NN): Flink's exact percentile with linear
  interpolation between the closest ranks, as numpy's default), and COUNT(*) as `event_count`;
- a sink table on the features topic: Kafka connector with a `raw` key (`record_key()` of the record:
  feature, dimensions, window end) and a JSON value shaped as `FeatureRecord`; delivery exactly-once
  (Kafka transactions committed on each checkpoint).

Lateness. A window [start, end) fires once the watermark reaches end - 1 ms, i.e. once an event at least
L past the window's end has been read; until then later-arriving events for it are counted. An event
whose every window has fired is dropped (Flink's window TVF semantics; for hopping windows an event still
counts in those of its windows that have not fired). So `allowedLateness` is the watermark delay: how far
behind the newest event an event may be and still be counted. The price is latency: a window is emitted
L after its end (plus, with exactly-once, up to one checkpoint interval until it is committed).

Duplicates. A client that re-sends a batch to the ingest API (documented as safe) puts the same event id on
the raw topic twice; counted twice it would look like a traffic spike to the detector. So every window reads
the stream after a deduplication by event id, the same definition of "the same event" as PostgreSQL's
`ON CONFLICT (event_id) DO NOTHING`. The form is chosen for the windows after it:

- keep-first-row on *processing time* is insert-only (`Deduplicate(keep=[FirstRow], order=[PROCTIME],
  outputInsertOnly=[true])`: each id is emitted once, when first seen, never retracted), and it passes
  `__rowtime` through as a time attribute, so the window TVFs and their watermarks work unchanged and the
  exactly-once Kafka sink (which takes inserts only) stays valid. The planner output is pinned by an
  integration test (EXPLAIN CHANGELOG_MODE).
- keep-first-row on event time (ORDER BY `__rowtime`) also plans as an insert-only `Deduplicate` in
  Flink 2.2 (checked with EXPLAIN), but it picks the copy with the smallest event time, and the copies of a
  re-sent event carry the same time: it would only add a dependence on the watermark for the same answer.
  Window Deduplication (ROW_NUMBER over `window_start, window_end, id` after the window TVF) is exact per
  window with state freed when the window fires, but it keeps one full row per (window, id), size/slide rows
  per event with hopping windows, and runs once per feature instead of once per source.
- state: one entry per id seen within W, the dedup window, set as `table.exec.state.ttl` (written on
  creation, processing time; the job's only non-window state, window state is freed by the watermark). W is
  `events.dedupWindow` (10 min by default) raised to the longest `size + allowedLateness` of the features
  (`plan.dedup_window_ms`): a copy arriving more than W after the first finds every window of its event time
  fired in real-time operation, and is dropped as late. Cost: ids/s * W * ~150-200 bytes on the heap
  backend (an estimate, not measured: the key row with its 36-character id, a boolean value in a TTL
  wrapper with its timestamp, the state map entry), e.g. 120 events/s * 10 min ≈ 72k ids ≈ 11-14 MB;
  10k events/s * 10 min ≈ 6M ids ≈ 1 GB: use the RocksDB state backend there.
- exactly-once across restarts: the dedup state is keyed state, checkpointed with the source offsets and the
  windows; a restart restores all three at the same point. After a downtime longer than W the restored ids
  have expired (TTL counts processing time), so only copies re-sent within W of their first are removed.

Cost per event (profiled with JFR on `adnomaly bench features`: the source's task thread is the bottleneck,
~99 % busy, nothing back-pressured). Each feature's INSERT expands the distinct view on its own, so by
default the planner built one deduplication *per feature* (each with its own TTL state and its own
shuffle), and recomputed the source's computed columns per feature: the event-time parse (TRY_CAST of a
string to TIMESTAMP goes through java.time's optional-section parser, the single most expensive thing per
event) ran once in the watermark generator and once more per feature. With
`table.optimizer.reuse-optimize-block-with-digest-enabled` the identical expansions become one block: one
Calc after the source and one Deduplicate, shared by every feature (same SQL, same results; the EXPLAIN
test pins a single dedup). `pipeline.object-reuse` saves a row copy per chained operator. The benchmark's
ceiling (`compile_source_count`) is the same source tables with only a COUNT(*) on top.

Changing the plan's shape changes its operators: a checkpoint taken by a job compiled before this change
may not restore into it (the second dedup's state has no operator left to go to).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from adnomaly.config import EventsConfig, KafkaConfig, TopicNames
from adnomaly.durations import duration_ms
from adnomaly.features.columns import Column, event_columns, literal, quote
from adnomaly.features.record import FeatureRecord
from adnomaly.plan import dedup_window_ms, events_config, plan_topics
from adnomaly.spec import FeatureSpec, MetricSpec, Pipeline

JOB_FORMAT = 1
ROWTIME = "__rowtime"
PROCTIME = "__proctime"
EVENT_ID = "__event_id"  # the dedup key
COPY = "__copy"  # ROW_NUMBER() of the copies of one event id; 1 is the first seen
DEFAULT_ID_FIELD = "event_id"  # where the codec puts an id it derived (and the built-in schemas' id)
EARLIEST_EVENT_TIME = "TIMESTAMP '2000-01-01 00:00:00.000'"  # the codec's floor (events before are invalid)
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
RECORD_FIELDS = ("feature", "dimensions", "window_start", "window_end", "metrics", "event_count")
assert FeatureRecord.__struct_fields__ == RECORD_FIELDS, "sink columns must follow FeatureRecord"


class FlinkJob(msgspec.Struct, frozen=True, kw_only=True):
    """The rendered config of the features job: what `adnomaly_flink_job.py --config FILE` executes."""

    format: int = JOB_FORMAT
    pipeline: str
    job_name: str
    configuration: dict[str, str]  # Flink options, set before any statement runs
    statements: list[str]  # CREATE TABLE / CREATE TEMPORARY VIEW, executed in order
    inserts: list[str]  # INSERT INTO ..., submitted together as one statement set (one Flink job)
    consumer_groups: list[str]  # Kafka group ids the sources commit their offsets to (lag monitoring)
    transactional_id_prefixes: list[str]  # one per sink; stable across restarts (aborts lingering txns)
    # The Kafka tables and their configured security protocol. The job adds the SASL/TLS options to these
    # tables at start, from its own environment (SecretEnv.KAFKA_*): no credential is ever in this config.
    kafka_tables: list[str] = msgspec.field(default_factory=list)
    kafka_security_protocol: str = "PLAINTEXT"

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)

    def with_configuration(self, **overrides: str) -> FlinkJob:
        """A copy with Flink options added or replaced (keys with dots: pass a dict via `**{...}`)."""
        return msgspec.structs.replace(self, configuration={**self.configuration, **overrides})


# The options that change which operators the planner makes of the statements (the rest, e.g. parallelism,
# TTLs, checkpointing, only configure them).
PLAN_OPTION_PREFIXES = ("table.optimizer.",)
_BOOTSTRAP_OPTION = re.compile(r"'properties\.bootstrap\.servers' = '[^']*',?")


def plan_digest(job: FlinkJob) -> str:
    """A fingerprint of the job's operator graph: its statements, inserts and the planner's options.

    Flink maps a checkpoint's state to operators by ids derived from the graph's shape, so a checkpoint taken
    by a different graph (a feature added or changed, or a planner option of a newer Adnomaly) may hold state
    for operators that no longer exist, and its restore fails. Whoever restores keeps checkpoints per digest
    (`adnomaly.services.flink.FeaturesJob`)."""
    digest = hashlib.sha256()
    planner = sorted((k, v) for k, v in job.configuration.items() if k.startswith(PLAN_OPTION_PREFIXES))
    # Where Kafka is reached is no part of the graph (a local broker's port may change between runs).
    statements = [_BOOTSTRAP_OPTION.sub("", statement) for statement in job.statements]
    for part in (*statements, "\0inserts", *job.inserts, "\0options", *(f"{k}={v}" for k, v in planner)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def decode_job(raw: bytes) -> FlinkJob:
    return msgspec.json.decode(raw, type=FlinkJob)


@dataclass(frozen=True)
class JobOptions:
    """How the job runs; the backends differ only here (checkpoint URI, parallelism, state backend)."""

    checkpoint_dir: str  # file:///… locally, s3://bucket/… on Kubernetes
    savepoint_dir: str | None = None  # default: <checkpoint_dir>/../savepoints
    checkpoint_interval: str = "10s"  # also the commit interval of the exactly-once sink: feature latency
    parallelism: int = 1
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    source_idle_timeout: str = "10s"  # a partition without data for this long does not hold the watermark
    watermark_interval: str = "200ms"
    delivery: Literal["exactly-once", "at-least-once"] = "exactly-once"
    transaction_timeout: str = "15m"  # ≤ the brokers' transaction.max.timeout.ms (15 min by default)
    retained_checkpoints: int = 3

    def __post_init__(self) -> None:
        if not re.match(r"^(file|s3|s3a|s3p|hdfs|gs|abfss?|oss)://", self.checkpoint_dir):
            raise ValueError(
                f"checkpoint_dir must be a URI such as file:///… or s3://…, not {self.checkpoint_dir!r}"
            )
        if self.parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        if duration_ms(self.transaction_timeout) <= duration_ms(self.checkpoint_interval):
            raise ValueError("transaction_timeout must be longer than checkpoint_interval")


# -- small SQL builders --------------------------------------------------------------------------------------

_UNITS = (("DAY", 86_400_000), ("HOUR", 3_600_000), ("MINUTE", 60_000), ("SECOND", 1000))


def sql_interval(ms: int) -> str:
    """A day-time interval literal for `ms` milliseconds, in the largest unit that divides it exactly."""
    if ms <= 0:
        raise ValueError(f"an interval must be positive, got {ms} ms")
    for unit, size in _UNITS:
        if ms % size == 0:
            value = ms // size
            digits = len(str(value))
            if digits > 6:
                continue
            return f"INTERVAL '{value}' {unit}" + (f"({digits})" if digits > 2 else "")
    seconds, millis = divmod(ms, 1000)
    digits = max(1, len(str(seconds)))
    if digits > 6:
        raise ValueError(f"interval of {ms} ms is too long to express with millisecond precision")
    return f"INTERVAL '{seconds}.{millis:03d}' SECOND({digits}, 3)"


def flink_duration(text: str) -> str:
    """A spec duration (`10s`, `5m`) as a Flink configuration duration (`10000 ms`)."""
    return f"{duration_ms(text)} ms"


def event_time_sql(column: str) -> str:
    """TIMESTAMP(3) (UTC) from an RFC 3339 string column with any offset; NULL when it is not one.

    Flink's TO_TIMESTAMP_LTZ(string, format) ignores the offset, so it is applied here: the date and time
    before the zone (`T` or space between them, any fraction, truncated to milliseconds like event time in
    the windows) minus the offset (`Z` or `±HH:MM`). Plain string functions and one TRY_CAST, no regular
    expressions: this runs for every event (measured: a regex-based version cost ~10 µs more per event).
    """
    col = quote(column)
    n = f"CHAR_LENGTH({col})"

    def local(length: str) -> str:
        text = f"OVERLAY(SUBSTRING({col} FROM 1 FOR {length}) PLACING ' ' FROM 11 FOR 1)"
        return f"TRY_CAST({text} AS TIMESTAMP(3))"

    offset_s = (
        f"(CAST(SUBSTRING({col} FROM {n} - 4 FOR 2) AS INT) * 3600 + "
        f"CAST(SUBSTRING({col} FROM {n} - 1 FOR 2) AS INT) * 60)"
    )
    numeric_zone = f"SUBSTRING({col} FROM {n} - 2 FOR 1) = ':' AND SUBSTRING({col} FROM {n} - 5 FOR 1)"
    return (
        f"CASE WHEN SUBSTRING({col} FROM {n} FOR 1) IN ('Z', 'z') THEN {local(f'{n} - 1')} "
        f"WHEN {numeric_zone} = '+' THEN TIMESTAMPADD(SECOND, -{offset_s}, {local(f'{n} - 6')}) "
        f"WHEN {numeric_zone} = '-' THEN TIMESTAMPADD(SECOND, {offset_s}, {local(f'{n} - 6')}) END"
    )


def iso_sql(expr: str) -> str:
    """A window bound (TIMESTAMP(3), UTC) as Python's `datetime.isoformat()` of the aware UTC datetime,
    e.g. `2026-01-01T10:05:00+00:00` or `…T10:05:00.500000+00:00`, so that the Kafka key computed in SQL
    equals `record_key()` of the decoded record."""
    millis = f"DATE_FORMAT({expr}, 'SSS')"
    return (
        f"CONCAT(DATE_FORMAT({expr}, 'yyyy-MM-dd''T''HH:mm:ss'), "
        f"CASE WHEN {millis} = '000' THEN '' ELSE CONCAT('.', {millis}, '000') END, '+00:00')"
    )


def _options(options: dict[str, str]) -> str:
    return ",\n".join(f"  {literal(k)} = {literal(v)}" for k, v in options.items())


def _kafka_common(kafka: KafkaConfig, topic: str) -> dict[str, str]:
    common = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": kafka.bootstrap_servers}
    if kafka.security_protocol != "PLAINTEXT":
        common["properties.security.protocol"] = kafka.security_protocol
    return common


# -- per lateness: the source table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    table: str
    lateness_ms: int
    group_id: str

    @property
    def distinct(self) -> str:
        """The view of this source with one row per event id (see "Duplicates")."""
        return f"distinct_{self.table}"


def _sources(pipeline: str, features: Sequence[FeatureSpec], role: str = "features") -> dict[int, Source]:
    """One source per distinct lateness; `role` names the consumer group, so that another job over the same
    topic (the benchmark's source-count ceiling) never resumes from, or moves, the features job's offsets."""
    latenesses = sorted({duration_ms(f.allowed_lateness) for f in features})
    return {
        ms: Source(f"raw_events_lateness_{ms}ms", ms, f"{pipeline}-{role}-lateness-{ms}ms")
        for ms in latenesses
    }


def id_fields(events: EventsConfig) -> tuple[str, ...]:
    """Where an event's id is, in order: the codec takes `idField` when set and not empty, else `event_id`
    (where it also writes an id it derived, before the ingest API produces the event)."""
    if events.id_field is None or events.id_field == DEFAULT_ID_FIELD:
        return (DEFAULT_ID_FIELD,)
    return (events.id_field, DEFAULT_ID_FIELD)


def event_id_sql(fields: Sequence[str]) -> str:
    """The dedup key: the first non-empty id field; a fresh UUID when there is none, so that records without
    an id are never merged with each other (Flink cannot derive the codec's content hash)."""
    ids = [f"NULLIF({quote(f)}, '')" for f in fields]
    return f"COALESCE({', '.join(ids)}, UUID())"


def source_ddl(
    source: Source, columns: dict[str, Column], time_field: str, events: EventsConfig, kafka: KafkaConfig
) -> str:
    cols = [f"  {quote(time_field)} STRING"]
    cols += [f"  {quote(c.name)} {c.sql_type}" for c in columns.values() if c.name != time_field]
    cols += [f"  {quote(f)} STRING" for f in id_fields(events) if f not in columns and f != time_field]
    cols.append(f"  {quote(ROWTIME)} AS {event_time_sql(time_field)}")
    cols.append(f"  {quote(PROCTIME)} AS PROCTIME()")
    cols.append(f"  {quote(EVENT_ID)} AS {event_id_sql(id_fields(events))}")
    rowtime = quote(ROWTIME)
    skew = sql_interval(max(1, round(events.max_future_skew_s * 1000)))
    # No watermark from events beyond the future skew (NULL watermarks are ignored); they are filtered later.
    # allowedLateness 0s: the watermark is the newest event time itself (no interval literal can be zero).
    delayed = f"{rowtime} - {sql_interval(source.lateness_ms)}" if source.lateness_ms > 0 else rowtime
    cols.append(f"  WATERMARK FOR {rowtime} AS CASE WHEN {rowtime} <= LOCALTIMESTAMP + {skew} THEN {delayed} END")
    options = {
        **_kafka_common(kafka, kafka.topics.raw),
        "properties.group.id": source.group_id,
        "scan.startup.mode": "group-offsets",  # a fresh deployment resumes where the last one committed
        "properties.auto.offset.reset": "earliest",
        "format": "json",
        "json.ignore-parse-errors": "true",  # invalid events: skipped here, dead-lettered by the processor
        "json.fail-on-missing-field": "false",
    }
    return (
        f"CREATE TABLE {quote(source.table)} (\n" + ",\n".join(cols) + f"\n) WITH (\n{_options(options)}\n)"
    )


def distinct_ddl(source: Source, columns: dict[str, Column], time_field: str) -> str:
    """Keep the first copy of each event id (Flink's keep-first-row deduplication on processing time, which
    the planner turns into an insert-only `Deduplicate` that passes `__rowtime` on as a time attribute).

    The time field's text is not passed on: every feature reads event time from `__rowtime`, and the one
    dedup shared by all features keeps what its view selects in its state and ships it through a shuffle."""
    names = [*(c.name for c in columns.values() if c.name != time_field), ROWTIME]
    select = ", ".join(quote(n) for n in names)
    return (
        f"CREATE TEMPORARY VIEW {quote(source.distinct)} AS\nSELECT {select}\nFROM (\n"
        f"  SELECT *, ROW_NUMBER() OVER (PARTITION BY {quote(EVENT_ID)} ORDER BY {quote(PROCTIME)} ASC) "
        f"AS {quote(COPY)}\n  FROM {quote(source.table)}\n)\nWHERE {quote(COPY)} = 1"
    )


# -- per feature: view, sink, windowing query ----------------------------------------------------------------


def _operands(metric: MetricSpec) -> tuple[str, ...]:
    return tuple(x for x in (metric.field, metric.numerator, metric.denominator) if x is not None)


def _used_fields(feature: FeatureSpec) -> set[str]:
    return {name for metric in feature.metrics for name in _operands(metric)}


def view_name(feature: FeatureSpec) -> str:
    return f"events_{feature.name}"


def sink_name(feature: FeatureSpec) -> str:
    return f"features_{feature.name}"


def _dim(name: str) -> str:
    return f"d_{name}"


def _operand(name: str) -> str:
    return f"x_{name}"


def view_ddl(feature: FeatureSpec, source: Source, columns: dict[str, Column], events: EventsConfig) -> str:
    rowtime = quote(ROWTIME)
    select = [rowtime]
    select += [f"{quote(d)} AS {quote(_dim(d))}" for d in feature.dimensions]
    select += [f"{columns[f].as_number()} AS {quote(_operand(f))}" for f in sorted(_used_fields(feature))]
    skew = sql_interval(max(1, round(events.max_future_skew_s * 1000)))
    where = [
        f"{rowtime} IS NOT NULL",
        f"{rowtime} >= {EARLIEST_EVENT_TIME}",
        f"{rowtime} <= LOCALTIMESTAMP + {skew}",
    ]
    for name in [*feature.dimensions, *sorted(_used_fields(feature) - set(feature.dimensions))]:
        column = columns[name]
        # Dimensions are grouped on: always required, whatever the schema says.
        check = column.predicate() if name not in feature.dimensions else _required(column)
        if check:
            where.append(check)
    return (
        f"CREATE TEMPORARY VIEW {quote(view_name(feature))} AS\nSELECT "
        + ",\n       ".join(select)
        + f"\nFROM {quote(source.distinct)}\nWHERE "
        + "\n  AND ".join(where)
    )


def _required(column: Column) -> str:
    return " AND ".join([f"{quote(column.name)} IS NOT NULL", *column.checks])


def aggregate_sql(metric: MetricSpec) -> str:
    """The SQL aggregate of one metric, as DOUBLE (NULL when undefined: no values, zero denominator)."""
    if metric.agg == "count":
        return "CAST(COUNT(*) AS DOUBLE)"
    if metric.agg == "ratio":
        num, den = quote(_operand(metric.numerator or "")), quote(_operand(metric.denominator or ""))
        return f"SUM({num}) / NULLIF(SUM({den}), 0.0E0)"
    x = quote(_operand(metric.field or ""))
    if metric.agg in PERCENTILES:
        return f"PERCENTILE({x}, {PERCENTILES[metric.agg]})"
    return f"CAST({metric.agg.upper()}({x}) AS DOUBLE)"


def window_tvf(feature: FeatureSpec) -> str:
    table = f"TABLE {quote(view_name(feature))}"
    time = f"DESCRIPTOR({quote(ROWTIME)})"
    size = sql_interval(duration_ms(feature.window.size))
    if feature.window.type == "tumbling":
        return f"TUMBLE({table}, {time}, {size})"
    slide = sql_interval(duration_ms(feature.window.slide or feature.window.size))
    return f"HOP({table}, {time}, {slide}, {size})"


def record_key_sql(feature: FeatureSpec) -> str:
    """`record_key()` in SQL: `<feature>|<dim>=<value>|…|<window end isoformat>`."""
    parts = [literal(f"{feature.name}|")]
    for i, dim in enumerate(feature.dimensions):
        parts += [literal(("|" if i else "") + f"{dim}="), quote(_dim(dim))]
    parts += [literal("|"), iso_sql("window_end")]
    return f"CONCAT({', '.join(parts)})"


def insert_sql(feature: FeatureSpec) -> str:
    dims = [quote(_dim(d)) for d in feature.dimensions]
    metrics = [aggregate_sql(m) for m in feature.metrics]
    select = [
        record_key_sql(feature),
        literal(feature.name),
        f"ROW({', '.join(dims)})",
        iso_sql("window_start"),
        iso_sql("window_end"),
        f"ROW({', '.join(metrics)})",
        "COUNT(*)",
    ]
    return (
        f"INSERT INTO {quote(sink_name(feature))}\nSELECT "
        + ",\n       ".join(select)
        + f"\nFROM TABLE({window_tvf(feature)})\nGROUP BY window_start, window_end, {', '.join(dims)}"
    )


def transactional_id_prefix(pipeline: str, feature: FeatureSpec) -> str:
    return f"adnomaly-{pipeline}-{feature.name}"


def sink_ddl(pipeline: str, feature: FeatureSpec, kafka: KafkaConfig, options: JobOptions) -> str:
    dims = ", ".join(f"{quote(d)} STRING" for d in feature.dimensions)
    metrics = ", ".join(f"{quote(m.name)} DOUBLE" for m in feature.metrics)
    cols = [
        "  `record_key` STRING",
        "  `feature` STRING",
        f"  `dimensions` ROW<{dims}>",
        "  `window_start` STRING",
        "  `window_end` STRING",
        f"  `metrics` ROW<{metrics}>",
        "  `event_count` BIGINT",
    ]
    sink = {
        **_kafka_common(kafka, kafka.topics.features),
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "json",
        "value.fields-include": "EXCEPT_KEY",
        "value.json.encode.ignore-null-fields": "false",  # an undefined metric is written as null
        # Kafka's partitioner: by key hash, so one window key always lands on one partition.
        "sink.partitioner": "default",
        "sink.delivery-guarantee": options.delivery,
    }
    if options.delivery == "exactly-once":
        sink["sink.transactional-id-prefix"] = transactional_id_prefix(pipeline, feature)
        sink["properties.transaction.timeout.ms"] = str(duration_ms(options.transaction_timeout))
    return (
        f"CREATE TABLE {quote(sink_name(feature))} (\n"
        + ",\n".join(cols)
        + f"\n) WITH (\n{_options(sink)}\n)"
    )


# -- the job -------------------------------------------------------------------------------------------------


def job_configuration(pipeline: str, options: JobOptions, dedup_window_ms: int) -> dict[str, str]:
    savepoints = options.savepoint_dir or options.checkpoint_dir.rstrip("/").rsplit("/", 1)[0] + "/savepoints"
    return {
        "pipeline.name": job_name(pipeline),
        "execution.runtime-mode": "STREAMING",
        "parallelism.default": str(options.parallelism),
        "table.local-time-zone": "UTC",  # LOCALTIMESTAMP and window bounds in UTC
        "pipeline.auto-watermark-interval": flink_duration(options.watermark_interval),
        "table.exec.source.idle-timeout": flink_duration(options.source_idle_timeout),
        "execution.checkpointing.interval": flink_duration(options.checkpoint_interval),
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": options.checkpoint_dir,
        "execution.checkpointing.savepoint-dir": savepoints,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": str(options.retained_checkpoints),
        "state.backend.type": options.state_backend,
        # The dedup window W: how long an event id is remembered (the job's only state with a TTL).
        "table.exec.state.ttl": f"{dedup_window_ms} ms",
        # Throughput (see "Cost per event"): one dedup per source, not one per feature...
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        # ...and chained operators hand rows on instead of copying them (safe: the SQL runtime's operators
        # never hold on to an input row they were handed, which is what object reuse requires).
        "pipeline.object-reuse": "true",
    }


def job_name(pipeline: str) -> str:
    return f"adnomaly-{pipeline}-features"


@dataclass(frozen=True)
class _Reading:
    """How a pipeline's features read the raw topic: what both the features job and its source-count
    ceiling are built from, so the two can never disagree on a source's definition."""

    features: list[FeatureSpec]
    columns: dict[str, Column]
    time_field: str


def _reading(pipeline: Pipeline, events: EventsConfig) -> _Reading:
    features = list(pipeline.spec.features)
    if not features:
        raise ValueError(f"pipeline {pipeline.name} declares no features: there is no features job to run")
    time_field = events.time_field
    dimensions = {d for f in features for d in f.dimensions}
    used = {name for f in features for name in _used_fields(f)}
    for feature in features:
        if time_field in feature.dimensions or time_field in _used_fields(feature):
            raise ValueError(
                f"feature {feature.name}: the time field `{time_field}` cannot be a dimension or operand"
            )
    columns = event_columns(events, used - dimensions, text=dimensions)
    for name in id_fields(events):
        if name in columns and columns[name].sql_type != "STRING":
            raise ValueError(f"the id field `{name}` cannot be a metric operand")
    return _Reading(features, columns, time_field)


def compile_job(
    pipeline: Pipeline, kafka: KafkaConfig, events: EventsConfig, options: JobOptions
) -> FlinkJob:
    """The features job of `pipeline`; raises ValueError when the pipeline declares no features."""
    reading = _reading(pipeline, events)
    features, columns, time_field = reading.features, reading.columns, reading.time_field
    sources = _sources(pipeline.name, features)
    statements = [source_ddl(s, columns, time_field, events, kafka) for s in sources.values()]
    statements += [distinct_ddl(s, columns, time_field) for s in sources.values()]
    for feature in features:
        source = sources[duration_ms(feature.allowed_lateness)]
        statements.append(view_ddl(feature, source, columns, events))
        statements.append(sink_ddl(pipeline.name, feature, kafka, options))
    return FlinkJob(
        pipeline=pipeline.name,
        job_name=job_name(pipeline.name),
        configuration=job_configuration(
            pipeline.name, options, dedup_window_ms(round(events.dedup_window_s * 1000), features)
        ),
        statements=statements,
        inserts=[insert_sql(f) for f in features],
        consumer_groups=[s.group_id for s in sources.values()],
        transactional_id_prefixes=(
            [transactional_id_prefix(pipeline.name, f) for f in features]
            if options.delivery == "exactly-once"
            else []
        ),
        kafka_tables=[s.table for s in sources.values()] + [sink_name(f) for f in features],
        kafka_security_protocol=kafka.security_protocol,
    )


SOURCE_COUNT_ROLE = "source-count"


def compile_source_count(
    pipeline: Pipeline, kafka: KafkaConfig, events: EventsConfig, options: JobOptions
) -> FlinkJob:
    """The features job's ceiling: its source tables, built by the same `source_ddl` (Kafka connector, JSON
    format, computed event time, event id and watermark), each read by a bare `SELECT COUNT(*)` into a
    blackhole sink; the job's own Flink configuration (parallelism, checkpointing, watermark interval,
    object reuse), plus mini-batch so that the count is counted before the shuffle. The planner keeps
    every column and the computed ones in the Calc after the source (EXPLAIN), so this does all the
    per-event work of the features job's source chain up to its first shuffle, and nothing else.

    What the features job adds on top (dedup, validity filters, windows, percentiles, the transactional
    sink) is exactly what this leaves out, so features/ceiling is the share of the source's own rate the
    job keeps. Its consumer groups are its own (`source-count` role) and it writes nothing to Kafka.
    """
    reading = _reading(pipeline, events)
    sources = _sources(pipeline.name, reading.features, role=SOURCE_COUNT_ROLE)
    statements = [source_ddl(s, reading.columns, reading.time_field, events, kafka) for s in sources.values()]
    inserts = []
    for source in sources.values():
        sink = f"count_{source.table}"
        statements.append(f"CREATE TABLE {quote(sink)} (`n` BIGINT) WITH ('connector' = 'blackhole')")
        inserts.append(f"INSERT INTO {quote(sink)} SELECT COUNT(*) FROM {quote(source.table)}")
    name = f"adnomaly-{pipeline.name}-{SOURCE_COUNT_ROLE}"
    return FlinkJob(
        pipeline=pipeline.name,
        job_name=name,
        configuration={
            **job_configuration(pipeline.name, options, dedup_window_ms(round(events.dedup_window_s * 1000),
                                                                         reading.features)),
            "pipeline.name": name,
            # A two-phase count: each source's rows are counted where they are read, and only partial
            # counts cross the shuffle to the one global COUNT. Without it every full row would be
            # serialised to a single-key GroupAggregate: a cost of the count, not of the source.
            "table.exec.mini-batch.enabled": "true",
            "table.exec.mini-batch.allow-latency": "1 s",
            "table.exec.mini-batch.size": "10000",
        },
        statements=statements,
        inserts=inserts,
        consumer_groups=[s.group_id for s in sources.values()],
        transactional_id_prefixes=[],
        kafka_tables=[s.table for s in sources.values()],
        kafka_security_protocol=kafka.security_protocol,
    )


def pipeline_kafka(pipeline: Pipeline, kafka_bootstrap: str) -> KafkaConfig:
    """The Kafka settings of `pipeline`'s jobs: its planned topic names on `kafka_bootstrap`."""
    spec = pipeline.spec
    return KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        security_protocol=spec.kafka.external.security_protocol if spec.kafka.external else "PLAINTEXT",
        topics=TopicNames(**{role: t.name for role, t in plan_topics(pipeline).items()}),
    )


def compile_pipeline(pipeline: Pipeline, kafka_bootstrap: str, options: JobOptions) -> FlinkJob:
    """`compile_job` with the topic names and event settings the planner gives `pipeline`."""
    return compile_job(pipeline, pipeline_kafka(pipeline, kafka_bootstrap), events_config(pipeline), options)


def compile_pipeline_source_count(pipeline: Pipeline, kafka_bootstrap: str, options: JobOptions) -> FlinkJob:
    """`compile_source_count` with the same topics and event settings as `compile_pipeline`."""
    return compile_source_count(
        pipeline, pipeline_kafka(pipeline, kafka_bootstrap), events_config(pipeline), options
    )
