"""The Pipeline's `status`: phase, conditions, per-component readiness. Pure (the clock is an argument).

Kopf keeps no conditions; these follow the Kubernetes conventions: `Ready`, `Progressing`, `Degraded`
(plus plan warnings such as `ReplicasCapped`, and `TopicsReady` when the operator manages an external
Kafka's topics), each with reason, message, `observedGeneration`, and a
`lastTransitionTime` that changes only when the condition's status does — so a steady pipeline yields a
byte-identical status and the operator writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel

from adnomaly_operator.live import LiveObject
from adnomaly_operator.render.common import STAGE_APPS, STAGE_STORES, STAGE_TOPICS, Desired
from adnomaly_operator.topics import TOPICS_READY, TopicsOutcome

WAITING_REASONS = {STAGE_STORES: "WaitingForStores", STAGE_TOPICS: "WaitingForTopics", STAGE_APPS: "RollingOut"}


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    generation: int
    components: dict[str, str] = field(default_factory=dict)
    not_ready: tuple[str, ...] = ()
    total: int = 0
    waiting_stage: int | None = None  # the first stage with a workload that is not ready
    problems: tuple[Problem, ...] = ()
    failed: Problem | None = None  # the spec itself is unusable
    notes: tuple[tuple[str, str], ...] = ()  # plan warnings: (reason, message)
    kafka_bootstrap: str | None = None
    topics: dict[str, str] = field(default_factory=dict)  # role → Kafka topic name
    topics_sync: TopicsOutcome | None = None  # external Kafka with `manageTopics`: the last Admin API sync

    @property
    def ready_count(self) -> int:
        return self.total - len(self.not_ready)


def status_key(key: str) -> str:
    return to_camel(key.replace("-", "_"))


def observe_components(
    desired: Sequence[Desired], live: Mapping[tuple[str, str], LiveObject]
) -> tuple[dict[str, str], tuple[str, ...], int, int | None]:
    """(components display, not-ready keys, number of keys, first stage with a not-ready workload)."""
    groups: dict[str, list[Desired]] = {}
    for item in desired:
        if item.status_key is not None:
            groups.setdefault(item.status_key, []).append(item)
    components: dict[str, str] = {}
    not_ready: list[str] = []
    waiting: int | None = None
    for key, items in groups.items():
        states = [live.get((d.kind, d.name)) for d in items]
        ready = [s is not None and s.ready and s.hash == d.hash for s, d in zip(states, items, strict=True)]
        if len(items) > 1:
            display = f"{sum(ready)}/{len(items)}"
        else:
            state = states[0]
            display = state.display if state is not None and state.display else ("Ready" if ready[0] else "Pending")
        components[status_key(key)] = display
        if not all(ready):
            not_ready.append(status_key(key))
            stage = min(d.stage for d, r in zip(items, ready, strict=True) if not r)
            waiting = stage if waiting is None else min(waiting, stage)
    return dict(sorted(components.items())), tuple(sorted(not_ready)), len(groups), waiting


def with_topics_sync(
    observed: tuple[dict[str, str], tuple[str, ...], int, int | None], outcome: TopicsOutcome | None
) -> tuple[dict[str, str], tuple[str, ...], int, int | None]:
    """`observe_components`' result plus the Admin API's topics (`components.topics`, like KafkaTopics)."""
    components, not_ready, total, waiting = observed
    if outcome is None:
        return observed
    components = dict(sorted({**components, "topics": outcome.display}.items()))
    if not outcome.ready:
        not_ready = tuple(sorted({*not_ready, "topics"}))
        waiting = STAGE_TOPICS if waiting is None else min(waiting, STAGE_TOPICS)
    return components, not_ready, total + 1, waiting


def _condition(
    kind: str, status: bool, reason: str, message: str, generation: int,
    previous: Mapping[str, Mapping[str, Any]], now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    before = previous.get(kind)
    since = before.get("lastTransitionTime") if before is not None and before.get("status") == value else None
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


def phase_of(obs: Observation) -> tuple[str, str, str]:
    """(phase, reason, message) summarising the observation."""
    if obs.failed is not None:
        return "Failed", obs.failed.reason, obs.failed.message
    if obs.problems:
        return "Degraded", obs.problems[0].reason, "; ".join(p.message for p in obs.problems)
    if not obs.not_ready:
        return "Ready", "AllComponentsReady", f"{obs.ready_count}/{obs.total} components ready"
    stage = obs.waiting_stage if obs.waiting_stage is not None else STAGE_APPS
    reason = WAITING_REASONS.get(stage, "RollingOut")
    message = f"waiting for {', '.join(obs.not_ready)} ({obs.ready_count}/{obs.total} components ready)"
    return ("Pending" if stage <= STAGE_STORES else "Progressing"), reason, message


def _merged(notes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """One condition per reason (conditions are a map by type): several caps make one `ReplicasCapped`."""
    merged: dict[str, list[str]] = {}
    for reason, message in notes:
        merged.setdefault(reason, []).append(message)
    return [(reason, "; ".join(messages)) for reason, messages in merged.items()]


def build_status(obs: Observation, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or () if isinstance(c, Mapping)}
    phase, reason, message = phase_of(obs)
    gen = obs.generation
    ready = phase == "Ready"
    progressing = phase in ("Pending", "Progressing")
    degraded = phase in ("Degraded", "Failed")
    conditions = [
        _condition("Ready", ready, reason, message, gen, before, now),
        _condition("Progressing", progressing, reason if not ready else "Complete",
                   message if progressing else ("up to date" if ready else "blocked: " + message), gen, before, now),
        _condition("Degraded", degraded, reason if degraded else "AsExpected",
                   message if degraded else "no problems", gen, before, now),
    ]
    for note_reason, note_message in _merged(obs.notes):
        conditions.append(_condition(note_reason, True, note_reason, note_message, gen, before, now))
    if obs.topics_sync is not None:
        sync = obs.topics_sync
        conditions.append(_condition(TOPICS_READY, sync.ready, sync.reason, sync.message, gen, before, now))
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "phase": phase,
        "conditions": conditions,
        "components": obs.components,
        "readyComponents": f"{obs.ready_count}/{obs.total}",
    }
    if obs.kafka_bootstrap:
        status["kafkaBootstrap"] = obs.kafka_bootstrap
    if obs.topics:
        status["topics"] = dict(obs.topics)
    return status
