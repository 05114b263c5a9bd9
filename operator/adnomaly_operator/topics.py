"""The pipeline's topics on an external Kafka with `manageTopics`: what to do about them. Pure.

The desired set is the one the managed Kafka's KafkaTopic CRs carry (`KubePlan.topics`, from
`adnomaly.plan.plan_topics`); the existing topics are what the Admin API describes (`kafka_admin.py`
reads them and executes the decision). The rules are the managed case's:

- a missing topic is created with the desired partitions, replication factor and config;
- partitions only ever increase; a decrease is refused and reported, and then nothing at all is applied
  (as a KafkaTopic decrease blocks every write, `actions.partition_problems`);
- the config keys the plan sets (retention, min.insync.replicas) are altered where they differ; keys it
  does not set are left alone;
- the replication factor of an existing topic is not changed (that is a reassignment): a difference is
  reported in the condition's message;
- nothing is deleted while reconciling; only the finalizer deletes, and only under `deletionPolicy: Delete`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from adnomaly.plan import TopicPlan

# Reasons of the `TopicsReady` condition (and of the Degraded problem when it is False).
TOPICS_READY = "TopicsReady"
PARTITION_DECREASE = "PartitionDecrease"
KAFKA_UNREACHABLE = "KafkaUnreachable"
KAFKA_AUTH_FAILED = "KafkaAuthenticationFailed"
CREDENTIALS_MISSING = "KafkaCredentialsMissing"
TOPICS_FAILED = "TopicsFailed"  # the broker answered but refused an operation (e.g. not authorized)


def partition_decrease_message(topic: str, current: int, desired: int) -> str:
    """The one wording of a refused decrease (KafkaTopic CRs and the Admin API alike)."""
    return (
        f"topic {topic} has {current} partitions and Kafka cannot remove partitions; "
        f"the spec asks for {desired}: set it back to at least {current} (nothing was applied)"
    )


@dataclass(frozen=True)
class ExistingTopic:
    """A topic as the Admin API describes it; `config` holds at least the keys the plan sets."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionIncrease:
    topic: str
    current: int
    desired: int


@dataclass(frozen=True)
class ConfigChange:
    topic: str
    values: tuple[tuple[str, str], ...]  # (key, desired value), sorted by key


@dataclass(frozen=True)
class TopicDecision:
    creates: tuple[TopicPlan, ...] = ()
    increases: tuple[PartitionIncrease, ...] = ()
    config_changes: tuple[ConfigChange, ...] = ()
    refused: tuple[str, ...] = ()  # partition decreases, one message each; when any, nothing else is done
    notes: tuple[str, ...] = ()  # differences we report but do not change (replication factor)

    @property
    def blocked(self) -> bool:
        return bool(self.refused)

    @property
    def changes(self) -> int:
        return len(self.creates) + len(self.increases) + len(self.config_changes)


def decide_topics(desired: Iterable[TopicPlan], existing: Mapping[str, ExistingTopic]) -> TopicDecision:
    """Desired topics + the existing ones (by name) → what to do. Topics not desired are never touched."""
    wanted = sorted(desired, key=lambda t: t.name)
    refused = tuple(
        partition_decrease_message(t.name, existing[t.name].partitions, t.partitions)
        for t in wanted
        if t.name in existing and existing[t.name].partitions > t.partitions
    )
    notes = tuple(
        f"topic {t.name} has replication factor {existing[t.name].replication_factor}, the spec asks for "
        f"{t.replicas} (not changed: that is a partition reassignment)"
        for t in wanted
        if t.name in existing and existing[t.name].replication_factor != t.replicas
    )
    if refused:
        return TopicDecision(refused=refused, notes=notes)
    creates = tuple(t for t in wanted if t.name not in existing)
    increases = tuple(
        PartitionIncrease(t.name, existing[t.name].partitions, t.partitions)
        for t in wanted
        if t.name in existing and existing[t.name].partitions < t.partitions
    )
    changes = []
    for t in wanted:
        if t.name not in existing:
            continue
        current = existing[t.name].config
        differing = tuple(sorted((k, v) for k, v in t.config.items() if current.get(k) != v))
        if differing:
            changes.append(ConfigChange(t.name, differing))
    return TopicDecision(creates, increases, tuple(changes), (), notes)


@dataclass(frozen=True)
class TopicsOutcome:
    """The result of one sync, as the Pipeline's status shows it (`TopicsReady` and `components.topics`)."""

    ready: bool
    reason: str
    message: str
    ready_count: int
    total: int

    @property
    def blocks_everything(self) -> bool:
        """A refused partition decrease: like a KafkaTopic decrease, nothing is applied anywhere."""
        return self.reason == PARTITION_DECREASE

    @property
    def display(self) -> str:
        return f"{self.ready_count}/{self.total}"


def summary(decision: TopicDecision) -> str:
    """What a decision changes, for the operator's log ("" when nothing)."""
    done = []
    if decision.creates:
        done.append("create " + ", ".join(t.name for t in decision.creates))
    if decision.increases:
        done.append("add partitions to " + ", ".join(
            f"{i.topic} ({i.current} -> {i.desired})" for i in decision.increases
        ))
    if decision.config_changes:
        done.append("update the config of " + ", ".join(
            f"{c.topic} ({', '.join(k for k, _ in c.values)})" for c in decision.config_changes
        ))
    return "; ".join(done)


def outcome_of(decision: TopicDecision, total: int) -> TopicsOutcome:
    """The status of a decision that was executed (or, when blocked, refused). The message names the
    state, not what this pass did, so a steady pipeline keeps a byte-identical status."""
    if decision.blocked:
        return TopicsOutcome(False, PARTITION_DECREASE, "; ".join(decision.refused), total - len(decision.refused),
                             total)
    message = f"{total}/{total} topics as the spec says"
    if decision.notes:
        message += "; " + "; ".join(decision.notes)
    return TopicsOutcome(True, TOPICS_READY, message, total, total)


def failure(reason: str, message: str, total: int) -> TopicsOutcome:
    return TopicsOutcome(False, reason, message, 0, total)


# Back-off between attempts after a failed sync (seconds); a success is re-checked every `recheck`.
RETRY_BACKOFF = (2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


def retry_delay(failures: int) -> float:
    """Seconds until the next attempt after `failures` consecutive failed syncs (>= 1)."""
    return RETRY_BACKOFF[min(max(failures, 1), len(RETRY_BACKOFF)) - 1]
