"""The project's Kafka conventions (confluent-kafka): client configs, topic reconciliation, lag.

Every component builds its clients from `producer_config` / `consumer_config` so that delivery guarantees
are the same everywhere: producers wait for all in-sync replicas and are idempotent; consumers never commit
on their own (a component stores and commits an offset only after the write it feeds has succeeded).

Overrides are librdkafka property names (`"linger.ms"`); for convenience a keyword without a dot has its
underscores turned into dots (`linger_ms=20`, `client_id="x"`), except the Python callback keys
(`error_cb`, `stats_cb`, `on_delivery`, `logger`, ...), which are passed as they are.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

_PYTHON_KEYS = frozenset(
    {"error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_delivery", "on_commit", "logger", "log_level"}
)

PRODUCER_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "batch.size": 256 * 1024,  # bytes per partition batch (librdkafka's default is ~1 MB)
        "batch.num.messages": 10_000,
        "queue.buffering.max.kbytes": 64 * 1024,  # bound the memory held for undelivered messages
        "queue.buffering.max.messages": 200_000,
    }
)

CONSUMER_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
    }
)

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has committed nothing for the partition


class KafkaAdminError(RuntimeError):
    """A Kafka admin operation failed."""


class BrokerUnavailableError(KafkaAdminError):
    """No broker answered within the time allowed."""


class TopicNotFoundError(KafkaAdminError):
    """The topic does not exist."""


class PartitionDecreaseError(KafkaAdminError):
    """Kafka cannot remove partitions; `decreases` maps topic -> (current, desired) partition counts."""

    def __init__(self, decreases: Mapping[str, tuple[int, int]]) -> None:
        self.decreases = dict(decreases)
        detail = ", ".join(f"{name}: has {cur}, asked for {want}" for name, (cur, want) in decreases.items())
        super().__init__(
            f"refusing to decrease partitions (Kafka cannot; delete and recreate the topic to shrink it): "
            f"{detail}"
        )


def _normalize(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key if key in _PYTHON_KEYS or "." in key else key.replace("_", "."): value
        for key, value in overrides.items()
    }


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Config for confluent_kafka.Producer: acks=all, idempotent, lz4, small linger; overrides win."""
    return {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **_normalize(overrides)}


def consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Config for confluent_kafka.Consumer: manual offset store and commit, earliest, cooperative-sticky."""
    if not group_id:
        raise ValueError("group_id must not be empty")
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        **CONSUMER_DEFAULTS,
        **_normalize(overrides),
    }


def admin_client(bootstrap: str, **overrides: Any) -> AdminClient:
    # Warnings and errors only: short-lived admin clients otherwise log informational queue purges.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 4, **_normalize(overrides)})


@dataclass(frozen=True)
class TopicSettings:
    """Desired shape of one topic. `config` holds topic-level configs as strings (e.g. retention.ms)."""

    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(f"replication_factor must be >= 1, got {self.replication_factor}")
        for key, value in self.config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"topic config must map str to str, got {key!r}: {value!r}")
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))


@dataclass(frozen=True)
class TopicChange:
    """What `ensure_topics` did to one topic."""

    topic: str
    action: Literal["created", "updated", "unchanged"]
    partitions_before: int | None  # None when the topic was created
    partitions_after: int
    config_updated: tuple[str, ...] = ()  # config keys that were set on an existing topic


def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until a broker answers a metadata request; raise BrokerUnavailableError after `timeout`."""
    admin = admin_client(bootstrap, log_level=0)  # connection errors are expected while we wait
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(f"no Kafka broker at {bootstrap} after {timeout:.0f}s: {last_error}")
        try:
            if admin.list_topics(timeout=min(remaining, 2.0)).brokers:
                return
        except KafkaException as exc:
            last_error = exc
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _partition_counts(admin: AdminClient, timeout: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailableError(f"cannot list topics: {exc}") from None
    return {name: len(meta.partitions) for name, meta in metadata.topics.items() if meta.error is None}


def _error_code(exc: BaseException) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return int(exc.args[0].code())
    return None


def _config_changes(
    admin: AdminClient, wanted: Mapping[str, TopicSettings], timeout: float
) -> dict[str, dict[str, str]]:
    """For existing topics: the config keys whose current value differs from the desired one."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name, s in wanted.items() if s.config]
    if not resources:
        return {}
    changes: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            current = future.result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot describe configs of topic {resource.name}: {exc}") from None
        desired = wanted[resource.name].config
        differing = {
            key: value
            for key, value in desired.items()
            if key not in current or current[key].value != value
        }
        if differing:
            changes[resource.name] = differing
    return changes


def _apply_config(admin: AdminClient, changes: Mapping[str, Mapping[str, str]], timeout: float) -> None:
    if not changes:
        return
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in values.items()
            ],
        )
        for name, values in changes.items()
    ]
    for resource, future in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot update config of topic {resource.name}: {exc}") from None


def _wait_for_leaders(admin: AdminClient, topics: Mapping[str, TopicSettings], timeout: float) -> None:
    """Block until metadata shows every topic with its partitions, each with a leader."""
    deadline = time.monotonic() + timeout
    pending = dict(topics)
    while pending:
        try:
            metadata = admin.list_topics(timeout=max(0.5, min(2.0, deadline - time.monotonic())))
        except KafkaException:
            metadata = None
        if metadata is not None:
            for name in list(pending):
                meta = metadata.topics.get(name)
                if (
                    meta is not None
                    and meta.error is None
                    and len(meta.partitions) >= pending[name].partitions
                    and all(p.leader >= 0 for p in meta.partitions.values())
                ):
                    del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KafkaAdminError(f"topics without leaders after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(0.05)


def ensure_topics(
    bootstrap: str, topics: Mapping[str, TopicSettings], *, timeout: float = 30.0
) -> dict[str, TopicChange]:
    """Reconcile topics with their desired settings; idempotent; safe to run from several processes.

    Creates missing topics; raises the partition count of existing ones that have fewer than desired;
    sets the given config keys on existing topics where they differ (keys not named are left alone). It
    never decreases partitions: if any existing topic has more than desired, PartitionDecreaseError is
    raised before anything is changed. The replication factor of an existing topic is not changed.
    Returns what happened per topic, after metadata shows every topic with a leader for each partition.
    """
    admin = admin_client(bootstrap)
    changes: dict[str, TopicChange] = {}
    todo = dict(topics)
    for _attempt in range(3):  # another process may create or grow a topic between our look and our act
        existing = _partition_counts(admin, timeout)
        decreases = {
            name: (existing[name], s.partitions)
            for name, s in todo.items()
            if name in existing and existing[name] > s.partitions
        }
        if decreases:
            raise PartitionDecreaseError(decreases)
        retry: dict[str, TopicSettings] = {}

        new = [
            NewTopic(name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                     config=dict(s.config))
            for name, s in todo.items()
            if name not in existing
        ]  # fmt: skip
        if new:
            for name, future in admin.create_topics(new, request_timeout=timeout).items():
                try:
                    future.result(timeout=timeout)
                except KafkaException as exc:
                    if _error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                        retry[name] = todo[name]
                        continue
                    raise KafkaAdminError(f"cannot create topic {name}: {exc}") from None
                changes[name] = TopicChange(name, "created", None, todo[name].partitions)

        present = {name: s for name, s in todo.items() if name in existing}
        grow = [NewPartitions(name, s.partitions) for name, s in present.items() if existing[name] < s.partitions]
        grown: set[str] = set()
        if grow:
            for name, future in admin.create_partitions(grow, request_timeout=timeout).items():
                try:
                    future.result(timeout=timeout)
                except KafkaException as exc:
                    if _error_code(exc) == KafkaError.INVALID_PARTITIONS:  # grown meanwhile: look again
                        retry[name] = todo[name]
                        continue
                    raise KafkaAdminError(f"cannot add partitions to topic {name}: {exc}") from None
                grown.add(name)

        present = {name: s for name, s in present.items() if name not in retry}
        config_changes = _config_changes(admin, present, timeout)
        _apply_config(admin, config_changes, timeout)
        for name, s in present.items():
            updated = tuple(sorted(config_changes.get(name, {})))
            action: Literal["updated", "unchanged"] = "updated" if name in grown or updated else "unchanged"
            changes[name] = TopicChange(name, action, existing[name], max(existing[name], s.partitions), updated)

        if not retry:
            break
        todo = retry
    else:
        raise KafkaAdminError(f"topics kept changing under us while reconciling them: {sorted(todo)}")
    _wait_for_leaders(admin, topics, timeout)
    return {name: changes[name] for name in topics}


def consumer_lag(bootstrap: str, group_id: str, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
    """Per-partition lag of `group_id` on `topic`: high watermark minus committed offset.

    Safe to call while the group is active: it reads the committed offsets without joining the group.

    A partition the group has committed nothing for counts everything still retained in it
    (high minus low watermark), since the project's consumers start from the earliest offset.
    """
    admin = admin_client(bootstrap)
    try:
        metadata = admin.list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailableError(f"cannot read metadata for {topic}: {exc}") from None
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None:
        raise TopicNotFoundError(f"topic {topic!r} does not exist ({meta.error if meta else 'no metadata'})")
    partitions = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    committed = committed_offsets(bootstrap, group_id, partitions, timeout=timeout)
    try:
        high = _offsets(admin, partitions, OffsetSpec.latest(), timeout)
        low = _offsets(admin, partitions, OffsetSpec.earliest(), timeout)
    except KafkaException as exc:
        raise KafkaAdminError(f"cannot read the offsets of {topic!r}: {exc}") from None
    lag: dict[int, int] = {}
    for tp in partitions:
        offset = committed.get(tp.partition, NO_OFFSET)
        start = offset if offset >= 0 else low[tp.partition]
        lag[tp.partition] = max(0, high[tp.partition] - start)
    return lag


def committed_offsets(
    bootstrap: str, group_id: str, partitions: list[TopicPartition], *, timeout: float = 10.0
) -> dict[int, int]:
    """Committed offset per partition of `group_id` (NO_OFFSET where nothing is committed).

    Read through a Consumer that never subscribes (so it never joins the group), NOT through
    AdminClient.list_consumer_group_offsets: librdkafka (up to at least 2.16) dereferences a NULL consumer
    group and crashes the whole process with SIGSEGV when that admin call meets NOT_COORDINATOR, which
    happens while a broker is (re)loading __consumer_offsets (librdkafka issue #5040).
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False, "log_level": 3}
    )
    try:
        result = consumer.committed(partitions, timeout=timeout)
    except KafkaException as exc:
        raise KafkaAdminError(f"cannot read committed offsets of group {group_id!r}: {exc}") from None
    finally:
        consumer.close()
    offsets: dict[int, int] = {}
    for tp in result:
        if tp.error is not None and tp.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaAdminError(f"cannot read committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
        offsets[tp.partition] = tp.offset if tp.error is None else NO_OFFSET
    return offsets


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float
) -> dict[int, int]:
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout)
    return {tp.partition: future.result(timeout=timeout).offset for tp, future in futures.items()}
