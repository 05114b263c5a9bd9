"""Desired objects + what is live → what to write. Pure: the reconciler executes the result.

- An object whose live `adnomaly.io/applied-hash` equals the desired hash is left alone, so a no-op
  reconcile writes nothing.
- Ordered bring-up: an object is created only when what it needs is ready, and objects that already exist
  are kept up to date regardless. Topics and Kafka users need a ready Kafka and nothing else, so they are
  created while PostgreSQL, MinIO and Redis are still starting; Flink and the components need every store
  and every topic. (Waiting for all stores before any topic put the topics' own readiness on the critical
  path after the slowest store: one whole stage longer to Ready, `adnomaly bench operator`.)
- A partition decrease against the live KafkaTopic (or, with `manageTopics`, the external Kafka's topic)
  blocks everything: nothing is applied.
- With `manageTopics`, the Admin API sync's outcome gates the apps stage as ready KafkaTopics do.
- Owned objects no longer desired are deleted — or, for retained kinds under `deletionPolicy: Retain`,
  orphaned (their data outlives the Pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adnomaly_operator.live import LiveObject
from adnomaly_operator.render.common import STAGE_APPS, STAGE_STORES, STAGE_TOPICS, Desired
from adnomaly_operator.status import Problem
from adnomaly_operator.topics import PARTITION_DECREASE, TopicsOutcome, partition_decrease_message

# The store kinds the topics stage needs ready (Strimzi's Kafka; its node pool has no readiness of its own).
TOPIC_PREREQUISITES = ("Kafka", "KafkaNodePool")
# Kinds whose objects hold or guard data: kept (without owner) under `deletionPolicy: Retain`.
RETAINED_KINDS = ("KafkaTopic", "Secret")
# Kinds that exist only when their operator's CRDs are installed.
KIND_CAPABILITY = {
    "Kafka": "strimzi", "KafkaNodePool": "strimzi", "KafkaTopic": "strimzi", "KafkaUser": "strimzi",
    "FlinkDeployment": "flink", "ServiceMonitor": "service_monitor",
    "ScaledObject": "keda", "TriggerAuthentication": "keda",
}
CAPABILITY_HELP = {
    "strimzi": "Strimzi's CRDs (kafka.strimzi.io/v1) are not installed: install Strimzi >= 1.0, or use kafka.external",
    "flink": "the Flink Kubernetes Operator's CRDs (flink.apache.org/v1beta1) are not installed",
    "service_monitor": "the Prometheus Operator's ServiceMonitor CRD is not installed",
    "keda": "KEDA's CRDs (keda.sh/v1alpha1) are not installed: autoscaled Kafka consumers keep minReplicas "
            "(install KEDA, or remove their `autoscaling`)",
}
RECENT_WINDOW_S = 10.0  # how long a just-applied object may be missing from the watch cache


@dataclass(frozen=True)
class Capabilities:
    strimzi: bool = True
    flink: bool = True
    service_monitor: bool = False
    keda: bool = True  # assumed until discovery says otherwise: a wrong `False` would fight KEDA over replicas

    def allows(self, kind: str) -> bool:
        capability = KIND_CAPABILITY.get(kind)
        return capability is None or bool(getattr(self, capability))


@dataclass(frozen=True)
class Applied:
    """What the operator last wrote to (or first found right in) an object: the watch cache may not show
    a write yet, and `managed` is the baseline of owned fields that drift detection compares against."""

    hash: str
    resource_version: int
    at: float  # monotonic seconds
    managed: str | None = None


@dataclass(frozen=True)
class Actions:
    applies: tuple[Desired, ...] = ()
    creates: tuple[Desired, ...] = ()  # generated Secrets: create-only
    deletes: tuple[LiveObject, ...] = ()
    orphans: tuple[LiveObject, ...] = ()
    problems: tuple[Problem, ...] = ()
    blocked: bool = False  # a problem that forbids applying anything
    allowed_stage: int = STAGE_APPS
    waiting_on_cache: bool = False  # something was skipped because the watch cache lags: look again soon

    @property
    def writes(self) -> int:
        return len(self.applies) + len(self.creates) + len(self.deletes) + len(self.orphans)


def is_current(d: Desired, live: LiveObject | None) -> bool:
    return live is not None and live.hash == d.hash and not live.deleting


def drifted(d: Desired, live: LiveObject, baseline: Applied | None) -> bool:
    """Someone else changed (took over) fields we own since we applied this very content."""
    if baseline is None or baseline.hash != d.hash or baseline.managed is None:
        return False
    if live.resource_version < baseline.resource_version:
        return False  # the watch has not caught up with our own write yet
    return live.managed != baseline.managed


def partition_problems(desired: Sequence[Desired], live: Mapping[tuple[str, str], LiveObject]) -> list[Problem]:
    problems = []
    for d in desired:
        want = d.partitions
        if want is None:
            continue
        current = live.get((d.kind, d.name))
        if current is not None and current.partitions is not None and want < current.partitions:
            problems.append(Problem(PARTITION_DECREASE, partition_decrease_message(d.name, current.partitions, want)))
    return problems


def _all_ready(workloads: Sequence[Desired], live: Mapping[tuple[str, str], LiveObject]) -> bool:
    return all(is_current(d, live.get((d.kind, d.name))) and live[(d.kind, d.name)].ready for d in workloads)


def allowed_stage(desired: Sequence[Desired], live: Mapping[tuple[str, str], LiveObject]) -> int:
    """The first stage still waiting for an earlier one: every later stage's new objects wait (topics
    excepted, see `topics_may_start`)."""
    for stage in (STAGE_STORES, STAGE_TOPICS):
        if not _all_ready([d for d in desired if d.stage == stage and d.status_key is not None], live):
            return stage
    return STAGE_APPS


def topics_may_start(desired: Sequence[Desired], live: Mapping[tuple[str, str], LiveObject]) -> bool:
    """Whether the topics stage may create its objects: the Kafka they live in is ready (the other stores do
    not matter to a topic or a Kafka user). With no Kafka of our own (an external one) nothing holds them."""
    return _all_ready([d for d in desired if d.kind in TOPIC_PREREQUISITES and d.status_key is not None], live)


def plan_actions(
    desired: Sequence[Desired],
    live: Mapping[tuple[str, str], LiveObject],
    *,
    owner_uid: str,
    deletion_policy: str,
    capabilities: Capabilities = Capabilities(),
    recent: Mapping[tuple[str, str], Applied] | None = None,
    now: float = 0.0,
    topics: TopicsOutcome | None = None,
) -> Actions:
    """`topics`: the last Admin API sync of an external Kafka's topics (`manageTopics`), which gates the
    apps stage as ready KafkaTopics do; a refused partition decrease there blocks every write too."""
    problems = partition_problems(desired, live)
    if topics is not None and topics.blocks_everything:
        problems.append(Problem(topics.reason, topics.message))
    if problems:
        return Actions(problems=tuple(problems), blocked=True)
    recent = recent or {}
    missing = sorted({KIND_CAPABILITY[d.kind] for d in desired if not capabilities.allows(d.kind)})
    problems += [Problem("MissingCRD", CAPABILITY_HELP[m]) for m in missing]
    usable = [d for d in desired if capabilities.allows(d.kind)]
    gate = allowed_stage(usable, live)
    # The topics stage's own gate, ahead of `gate` while the other stores are still starting.
    topics_gate = STAGE_TOPICS if gate < STAGE_TOPICS and topics_may_start(usable, live) else gate
    if topics is not None and not topics.ready:
        problems.append(Problem(topics.reason, topics.message))
        gate = min(gate, STAGE_TOPICS)

    applies: list[Desired] = []
    creates: list[Desired] = []
    lagging = False
    for d in usable:
        key = (d.kind, d.name)
        current = live.get(key)
        mine = recent.get(key)
        if is_current(d, current) and not drifted(d, current, mine):  # type: ignore[arg-type]
            continue
        if current is not None and current.deleting:
            lagging = True  # wait until it is gone, then create it afresh
            continue
        if current is None and d.stage > (topics_gate if d.stage == STAGE_TOPICS else gate):
            continue
        if current is not None and current.hash == d.hash:
            applies.append(d)  # drift: take our fields back
            continue
        if mine is not None and mine.hash == d.hash and (
            (current is None and now - mine.at < RECENT_WINDOW_S)
            or (current is not None and current.resource_version < mine.resource_version)
        ):
            lagging = True  # we wrote exactly this moments ago; the watch has not caught up
            continue
        (creates if d.recipe is not None and current is None else applies).append(d)

    wanted = {(d.kind, d.name) for d in desired}
    deletes: list[LiveObject] = []
    orphans: list[LiveObject] = []
    for current in live.values():
        if (current.kind, current.name) in wanted or owner_uid not in current.owner_uids or current.deleting:
            continue
        if current.kind in RETAINED_KINDS and deletion_policy == "Retain":
            orphans.append(current)
        else:
            deletes.append(current)
    return Actions(
        applies=tuple(applies), creates=tuple(creates), deletes=tuple(deletes), orphans=tuple(orphans),
        problems=tuple(problems), allowed_stage=gate, waiting_on_cache=lagging,
    )
