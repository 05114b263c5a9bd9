"""The project's Kafka conventions (confluent-kafka): client configs, topic reconciliation, lag.

Every component builds its clients from `producer_config` / `consumer_config` so that delivery guarantees
are the same everywhere: producers wait for all in-sync replicas and are idempotent; consumers never commit
on their own (a component stores and commits an offset only after the write it feeds has succeeded).

Overrides are librdkafka property names (`"linger.ms"`); for convenience a keyword without a dot has its
underscores turned into dots (`linger_ms=20`, `client_id="x"`), except the Python callback keys
(`error_cb`, `stats_cb`, `on_delivery`, `logger`, ...), which are passed as they are.

Authentication comes from the environment (`SecretEnv.KAFKA_*`), decided by the pure `security_settings(env)`
and applied by `producer_config`, `consumer_config` and `admin_client`, so every component authenticates
once its credentials are set. A `security.protocol` override is the *configured* protocol (from the
component config); credentials in the environment upgrade it to its SASL form. The configs these return
hide the password in their repr/str.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from adnomaly.kafka_acls import AclRule

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


# -- authentication -------------------------------------------------------------------------------------

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-512"
# librdkafka properties whose values are secrets: never shown by ClientConfig's repr/str.
SECRET_PROPERTIES = frozenset(
    {"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"}
)
_ENV_USERNAME = "ADNOMALY_KAFKA_USERNAME"  # = SecretEnv.KAFKA_* (config.py imports too much to import here)
_ENV_PASSWORD = "ADNOMALY_KAFKA_PASSWORD"
_ENV_MECHANISM = "ADNOMALY_KAFKA_SASL_MECHANISM"
_ENV_PROTOCOL = "ADNOMALY_KAFKA_SECURITY_PROTOCOL"
_ENV_CA_FILE = "ADNOMALY_KAFKA_CA_FILE"


class KafkaSecurityError(ValueError):
    """The Kafka security settings in the environment are inconsistent (the message never holds a secret)."""


class ClientConfig(dict[str, Any]):
    """A librdkafka config (a plain dict to confluent-kafka) whose repr/str hide secret values."""

    def __repr__(self) -> str:
        return repr({key: "[redacted]" if key in SECRET_PROPERTIES else value for key, value in self.items()})

    __str__ = __repr__


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value and value.strip() else None


def security_settings(env: Mapping[str, str], configured: str = "PLAINTEXT") -> dict[str, str]:
    """librdkafka security properties from the environment (pure: `env` is any mapping).

    The protocol is $ADNOMALY_KAFKA_SECURITY_PROTOCOL when set; otherwise `configured` (the component
    config's), turned into its SASL form (PLAINTEXT -> SASL_PLAINTEXT, SSL -> SASL_SSL) when a username is
    set. SASL needs both username and password; the mechanism defaults to SCRAM-SHA-512;
    $ADNOMALY_KAFKA_CA_FILE becomes `ssl.ca.location` and needs a TLS protocol. Contradictions raise
    KafkaSecurityError, naming variables, never their secret values.
    """
    username, password = _env_value(env, _ENV_USERNAME), _env_value(env, _ENV_PASSWORD)
    mechanism, ca_file = _env_value(env, _ENV_MECHANISM), _env_value(env, _ENV_CA_FILE)
    explicit = _env_value(env, _ENV_PROTOCOL)
    if password is not None and username is None:
        raise KafkaSecurityError(f"{_ENV_PASSWORD} is set but {_ENV_USERNAME} is not")
    if username is not None and password is None:
        raise KafkaSecurityError(f"{_ENV_USERNAME} is set but {_ENV_PASSWORD} is not")
    if explicit is not None:
        protocol = explicit.strip().upper()
    else:
        protocol = configured.strip().upper()
        if username is not None and not protocol.startswith("SASL_"):
            protocol = f"SASL_{protocol}"
    source = _ENV_PROTOCOL if explicit is not None else "the configured security protocol"
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaSecurityError(f"{source} must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}")
    sasl = protocol.startswith("SASL_")
    if sasl and username is None:
        raise KafkaSecurityError(f"security protocol {protocol} needs {_ENV_USERNAME} and {_ENV_PASSWORD}")
    if not sasl and username is not None:
        raise KafkaSecurityError(f"{_ENV_USERNAME} is set but {source} is {protocol}, which sends no credentials")
    if mechanism is not None and not sasl:
        raise KafkaSecurityError(f"{_ENV_MECHANISM} is set but the security protocol {protocol} is not SASL")
    if ca_file is not None and protocol not in ("SSL", "SASL_SSL"):
        raise KafkaSecurityError(f"{_ENV_CA_FILE} is set but the security protocol {protocol} does not use TLS")
    settings = {"security.protocol": protocol}
    if sasl:
        chosen = (mechanism or DEFAULT_SASL_MECHANISM).strip().upper()
        if chosen not in SASL_MECHANISMS:
            raise KafkaSecurityError(f"{_ENV_MECHANISM} must be one of {', '.join(SASL_MECHANISMS)}, got {chosen!r}")
        assert username is not None and password is not None
        settings.update({"sasl.mechanism": chosen, "sasl.username": username.strip(), "sasl.password": password})
    if ca_file is not None:
        settings["ssl.ca.location"] = ca_file.strip()
    return settings


def _normalize(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key if key in _PYTHON_KEYS or "." in key else key.replace("_", "."): value
        for key, value in overrides.items()
    }


def _client_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any], env: Mapping[str, str] | None
) -> ClientConfig:
    """`base` + the security settings + the overrides. Overrides that set SASL/TLS properties themselves
    are taken as they are (the environment is not consulted); otherwise a `security.protocol` override is
    the configured protocol that the environment's credentials build on."""
    normalized = _normalize(overrides)
    if any(key.startswith(("sasl.", "ssl.")) for key in normalized):
        return ClientConfig({**base, **normalized})
    configured = normalized.pop("security.protocol", "PLAINTEXT")
    security = security_settings(os.environ if env is None else env, configured)
    return ClientConfig({**base, **security, **normalized})


def producer_config(bootstrap: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
    """Config for confluent_kafka.Producer: acks=all, idempotent, lz4, small linger; overrides win.
    Security from `env` (default: os.environ), see `security_settings`."""
    return _client_config({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS}, overrides, env)


# For consumer groups whose members may crash: a killed member's partitions are taken over after 10 s,
# not librdkafka's default 45 s (session timeout), with heartbeats well inside it.
CONSUMER_TUNING: dict[str, Any] = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000}


def consumer_config(
    bootstrap: str, group_id: str, *, env: Mapping[str, str] | None = None, **overrides: Any
) -> ClientConfig:
    """Config for confluent_kafka.Consumer: manual offset store and commit, earliest, cooperative-sticky."""
    if not group_id:
        raise ValueError("group_id must not be empty")
    return _client_config({"bootstrap.servers": bootstrap, "group.id": group_id, **CONSUMER_DEFAULTS}, overrides, env)


def admin_config(bootstrap: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
    # Warnings and errors only: short-lived admin clients otherwise log informational queue purges.
    return _client_config({"bootstrap.servers": bootstrap, "log_level": 4}, overrides, env)


def admin_client(bootstrap: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> AdminClient:
    return AdminClient(admin_config(bootstrap, env=env, **overrides))


class PartitionPause:
    """Pauses a consumer's whole assignment while its owner waits (a store down, a batch being written) and
    resumes it after; partitions assigned meanwhile follow the current state.

    Call `assigned(partitions)` from the consumer's on_assign: librdkafka keeps a partition's pause flag
    across a revoke and a later assign, and `resume()` only resumes the assignment of the moment, so a
    partition revoked during a wait would otherwise come back paused and never deliver again.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.paused = False

    def pause(self) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        self.paused = True

    def resume(self) -> None:
        if not self.paused:
            return
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)
        self.paused = False

    def assigned(self, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        if self.paused:
            self._consumer.pause(partitions)
        else:
            self._consumer.resume(partitions)


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
    bootstrap: str, topics: Mapping[str, TopicSettings], *, timeout: float = 30.0,
    client: Mapping[str, Any] | None = None,
) -> dict[str, TopicChange]:
    """Reconcile topics with their desired settings; idempotent; safe to run from several processes.

    Creates missing topics; raises the partition count of existing ones that have fewer than desired;
    sets the given config keys on existing topics where they differ (keys not named are left alone). It
    never decreases partitions: if any existing topic has more than desired, PartitionDecreaseError is
    raised before anything is changed. The replication factor of an existing topic is not changed.
    Returns what happened per topic, after metadata shows every topic with a leader for each partition.
    `client`: extra admin client properties (e.g. an admin's SASL login instead of the environment's).
    """
    admin = admin_client(bootstrap, **(client or {}))
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
    return {p: max(0, end - position) for p, (position, end) in group_offsets(bootstrap, group_id, topic,
                                                                              timeout=timeout).items()}


def group_offsets(bootstrap: str, group_id: str, topic: str, *, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Per partition of `topic`: (where `group_id` stands, the high watermark). Where it stands is its committed
    offset, or the low watermark where it has committed nothing (see `consumer_lag`)."""
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
    out: dict[int, tuple[int, int]] = {}
    for tp in partitions:
        offset = committed.get(tp.partition, NO_OFFSET)
        out[tp.partition] = (offset if offset >= 0 else low[tp.partition], high[tp.partition])
    return out


def committed_offsets(
    bootstrap: str, group_id: str, partitions: list[TopicPartition], *, timeout: float = 10.0,
    client: Mapping[str, Any] | None = None,
) -> dict[int, int]:
    """Committed offset per partition of `group_id` (NO_OFFSET where nothing is committed).

    Read through a Consumer that never subscribes (so it never joins the group), NOT through
    AdminClient.list_consumer_group_offsets: librdkafka (up to at least 2.16) dereferences a NULL consumer
    group and crashes the whole process with SIGSEGV when that admin call meets NOT_COORDINATOR, which
    happens while a broker is (re)loading __consumer_offsets (librdkafka issue #5040).
    """
    consumer = Consumer(
        _client_config({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
                        "log_level": 3}, client or {}, None)
    )  # fmt: skip
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


# -- users and ACLs (SCRAM + the StandardAuthorizer) -----------------------------------------------------------

_RESOURCE_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                   "transactionalId": ResourceType.TRANSACTIONAL_ID}  # fmt: skip
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
SCRAM_ITERATIONS = 8192


def acl_bindings(user: str, rules: Iterable[AclRule]) -> list[AclBinding]:
    """confluent-kafka ALLOW bindings for Kafka user `user` (principal `User:<user>`, any host)."""
    return [
        AclBinding(
            _RESOURCE_TYPES[rule.resource_type], rule.name, _PATTERNS[rule.pattern], f"User:{user}", "*",
            AclOperation[rule.operation.upper()], AclPermissionType.ALLOW,
        )
        for rule in rules
    ]  # fmt: skip


def create_acls(bootstrap: str, user: str, rules: Iterable[AclRule], *, timeout: float = 30.0,
                client: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Add `rules` for `user` (idempotent: an existing identical ACL is not an error)."""
    bindings = acl_bindings(user, rules)
    if not bindings:
        return
    admin = admin_client(bootstrap, **(client or {}))
    for binding, future in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot create ACL {binding}: {exc}") from None


def upsert_scram_user(
    bootstrap: str, user: str, password: str, *, mechanism: str = DEFAULT_SASL_MECHANISM, timeout: float = 30.0,
    client: Mapping[str, Any] | None = None,
) -> None:
    """Create or update `user`'s SCRAM credential (the password never appears in an error)."""
    scram = ScramMechanism.SCRAM_SHA_512 if mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(scram, SCRAM_ITERATIONS), password.encode())
    admin = admin_client(bootstrap, **(client or {}))
    for name, future in admin.alter_user_scram_credentials([upsert], request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot set the SCRAM credential of {name}: {exc}") from None


def readable_ends(
    bootstrap: str, topic: str, partitions: int, *, timeout: float = 30.0, client: Mapping[str, Any] | None = None
) -> dict[int, int]:
    """Per partition, the offset just after the last record a read_committed consumer gets (0: none).

    That is where a consumer group that has taken everything commits, and on a transactional topic it is not
    the high watermark: the partition ends with a commit marker, and after a producer failover possibly with
    aborted records and their abort marker, none of which is ever delivered. So the partition is read to its
    end (the whole partition: meant for small topics such as features, in tests and drains). Raises
    KafkaAdminError when the end is not reached within `timeout`."""
    consumer = Consumer(_client_config(
        {"bootstrap.servers": bootstrap, "group.id": f"adnomaly-probe-{os.getpid()}-{time.monotonic_ns()}",
         **CONSUMER_DEFAULTS, "enable.partition.eof": True, "log_level": 3}, client or {}, None,
    ))  # fmt: skip
    ends = dict.fromkeys(range(partitions), 0)
    pending = set(ends)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while pending:
            if time.monotonic() > deadline:
                raise KafkaAdminError(f"no end of {topic} partitions {sorted(pending)} reached in {timeout:.0f}s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is None:
                    ends[message.partition()] = message.offset() + 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise KafkaAdminError(f"cannot read {topic}[{message.partition()}]: {error}")
    finally:
        consumer.close()
    return ends
