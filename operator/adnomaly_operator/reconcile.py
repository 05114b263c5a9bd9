"""Reconcile one Pipeline: parse → plan → render → decide (pure) → write what differs → status.

Live state comes from the watch-fed indices (no reads on the hot path); writes are server-side applies
under one field manager. Generated secrets are created once with random contents. The status (and an
Event on each phase transition) is written only when it changed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adnomaly.spec import SpecError, parse_pipeline

from adnomaly_operator import metrics
from adnomaly_operator.actions import RETAINED_KINDS, Actions, Applied, Capabilities, plan_actions
from adnomaly_operator.budget import WriteBudget
from adnomaly_operator.client import ApiError, KubeClient
from adnomaly_operator.desired import KafkaAdminPlan, kube_plan
from adnomaly_operator.kafka_admin import AdminFactory, Login, TopicAdmin, TopicAdminError, delete_topics, sync_topics
from adnomaly_operator.live import LiveObject, managed_fingerprint, owns_field
from adnomaly_operator.names import ANNOTATION_HASH, HANDOVER_MANAGER, LABEL_PIPELINE
from adnomaly_operator.render import Desired, Images, SecretRecipe, render_pipeline
from adnomaly_operator.resources import PIPELINE, kind_of
from adnomaly_operator.status import Observation, Problem, build_status, observe_components, with_topics_sync
from adnomaly_operator.topics import (
    CREDENTIALS_MISSING,
    TOPICS_FAILED,
    TopicsOutcome,
    failure,
    outcome_of,
    retry_delay,
    summary,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, pipeline name)
LiveMap = dict[tuple[str, str], LiveObject]


class TransientError(Exception):
    """Worth retrying: the API server was busy or unreachable."""


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate_secret_data(recipe: SecretRecipe) -> dict[str, str]:
    alphabet = string.ascii_letters + string.digits

    def token(size: int) -> str:
        if recipe.alphanumeric:
            return "".join(secrets.choice(alphabet) for _ in range(size))
        return secrets.token_urlsafe(size)

    values = {key: token(size) for key, size in recipe.random.items()}
    return {**values, **{key: template.format(**values) for key, template in recipe.templates.items()}}


def pipeline_document(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": body.get("spec") or {},
    }


@dataclass
class _Rendered:
    uid: str
    generation: int
    service_monitor: bool
    keda: bool
    desired: list[Desired]
    notes: tuple[tuple[str, str], ...]
    bootstrap: str
    topics: dict[str, str]
    deletion_policy: str
    kafka_admin: KafkaAdminPlan | None = None


@dataclass(frozen=True)
class _TopicsSync:
    """The last Admin API sync of a Pipeline's topics (`manageTopics`)."""

    plan: KafkaAdminPlan
    outcome: TopicsOutcome
    at: float  # monotonic seconds
    failures: int  # consecutive failed syncs of this plan


@dataclass
class Reconciler:
    client: KubeClient
    live_of: Callable[[Key], LiveMap]
    images: Images = field(default_factory=Images)
    capabilities: Capabilities = field(default_factory=Capabilities)
    instance: str = "adnomaly-operator"
    pipelines: dict[Key, dict[str, Any]] = field(default_factory=dict)  # latest body per Pipeline (watch)
    _renders: dict[Key, _Rendered] = field(default_factory=dict)
    _recent: dict[Key, dict[tuple[str, str], Applied]] = field(default_factory=dict)
    _statuses: dict[Key, tuple[dict[str, Any], int, float]] = field(default_factory=dict)  # last written, rv, when
    status_interval: float = 2.0  # progress-only status updates (same phase) at most this often per Pipeline
    # ... and, across the fleet, at most this often (see adnomaly_operator.budget): 10/s, bursts of 20
    status_budget: WriteBudget = field(default_factory=lambda: WriteBudget(10.0, 20))
    _status_slots: dict[Key, float] = field(default_factory=dict)  # reserved progress write (monotonic s)
    topics_recheck: float = 30.0  # an in-sync external Kafka's topics are described again at most this often
    topic_admin: AdminFactory = TopicAdmin  # builds the Admin API client (tests may substitute)
    _topics: dict[Key, _TopicsSync] = field(default_factory=dict)
    # Pipelines whose last pass skipped a write the watch had not shown yet: any event of theirs may be it.
    waiting_on_cache: set[Key] = field(default_factory=set)

    # -- bookkeeping from the watch --

    def observe_pipeline(self, key: Key, body: Mapping[str, Any] | None) -> None:
        if body is None:
            self.pipelines.pop(key, None)
            self._renders.pop(key, None)
            self._recent.pop(key, None)
            self._statuses.pop(key, None)
            self._status_slots.pop(key, None)
            self._topics.pop(key, None)
            self.waiting_on_cache.discard(key)
            return
        self.pipelines[key] = dict(body)

    def own_status_echo(self, key: Key, body: Mapping[str, Any]) -> bool:
        """Whether a watch event of this Pipeline shows exactly the object our last status write left (same
        resourceVersion, same status): nothing changed that a pass would read, so it need not be queued.
        Every status write comes back this way; while a fleet comes up those were a third of all passes."""
        written = self._statuses.get(key)
        if written is None:
            return False
        meta = body.get("metadata") or {}
        return int(meta.get("resourceVersion") or 0) == written[1] and body.get("status") == written[0]

    # -- one pass --

    async def reconcile(self, key: Key) -> float | None:
        body = self.pipelines.get(key)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        started = time.perf_counter()
        try:
            wrote, requeue = await self._reconcile(key, body)
        except Exception as exc:
            metrics.RECONCILES.labels("error").inc()
            metrics.ERRORS.labels(type(exc).__name__).inc()
            log.warning("reconciling %s/%s failed (will retry): %s", key[0], key[1], exc)
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels("changed" if wrote else "noop").inc()
        return requeue

    def _render(self, key: Key, body: Mapping[str, Any]) -> _Rendered:
        meta = body["metadata"]
        generation = int(meta.get("generation", 0))
        cached = self._renders.get(key)
        caps = self.capabilities
        if cached is not None and (cached.uid, cached.generation, cached.service_monitor, cached.keda) == (
            meta["uid"], generation, caps.service_monitor, caps.keda
        ):
            return cached
        pipeline = parse_pipeline(pipeline_document(body))  # raises SpecError
        kp, desired = render_pipeline(
            pipeline, key[0], meta["uid"], self.images, service_monitor=caps.service_monitor, keda=caps.keda
        )
        rendered = _Rendered(
            meta["uid"], generation, caps.service_monitor, caps.keda, desired, kp.notes,
            kp.kafka_bootstrap, {role: t.name for role, t in kp.plan.topics.items()}, kp.deletion_policy,
            kp.kafka_admin,
        )
        self._renders[key] = rendered
        return rendered

    async def _reconcile(self, key: Key, body: Mapping[str, Any]) -> tuple[bool, float | None]:
        meta = body["metadata"]
        generation = int(meta.get("generation", 0))
        live = self.live_of(key)
        try:
            rendered = self._render(key, body)
        except SpecError as exc:
            problem = Problem("InvalidSpec", str(exc).replace("\n", "; "))
        except Exception as exc:  # a spec the model chokes on must not crash-loop the reconciler
            log.exception("%s/%s: planning failed", key[0], key[1])
            problem = Problem("RenderFailed", f"{type(exc).__name__}: {exc}")
        else:
            problem = None
        if problem is not None:
            metrics.ERRORS.labels(problem.reason).inc()
            wrote, _ = await self._write_status(key, body, Observation(generation, failed=problem))
            return wrote, None

        topics: TopicsOutcome | None = None
        requeue: float | None = None
        if rendered.kafka_admin is not None:
            topics, requeue = await self._sync_topics(key, rendered.kafka_admin)
        actions = plan_actions(
            rendered.desired, live, owner_uid=meta["uid"], deletion_policy=rendered.deletion_policy,
            capabilities=self.capabilities, recent=self._recent.get(key), now=time.monotonic(), topics=topics,
        )
        if not actions.blocked:
            self._adopt_baselines(key, rendered.desired, live)
        problems = list(actions.problems)
        if actions.waiting_on_cache:
            self.waiting_on_cache.add(key)
            requeue = 1.0 if requeue is None else min(requeue, 1.0)
        else:
            self.waiting_on_cache.discard(key)
        if not actions.blocked:
            write_problems, retry = await self._execute(key, actions)
            problems += write_problems
            if retry is not None:
                requeue = retry if requeue is None else min(requeue, retry)
        components, not_ready, total, waiting = with_topics_sync(observe_components(rendered.desired, live), topics)
        obs = Observation(
            generation, components, not_ready, total, waiting, tuple(problems), None, rendered.notes,
            rendered.bootstrap, rendered.topics, topics,
        )
        wrote_status, later = await self._write_status(key, body, obs)
        if later is not None:
            requeue = later if requeue is None else min(requeue, later)
        return actions.writes > 0 or wrote_status, requeue

    # -- an external Kafka's topics (`manageTopics`) --

    async def _kafka_login(self, namespace: str, plan: KafkaAdminPlan) -> Login | None:
        """The login from the credentials Secret the spec references (the keys the components get).
        Raises TopicAdminError when it cannot be read; the values never leave the returned Login."""
        if plan.credentials is None:
            return None
        username_ref, password_ref = plan.credentials
        try:
            secret = await self.client.get(kind_of("Secret"), namespace, username_ref.name)
        except ApiError as exc:
            if exc.transient:
                raise
            raise TopicAdminError(
                CREDENTIALS_MISSING, f"cannot read Secret {username_ref.name}: {exc.status} {exc.reason}"
            ) from None
        if secret is None:
            raise TopicAdminError(
                CREDENTIALS_MISSING, f"Secret {username_ref.name} (kafka.external.credentialsSecretRef) does not exist"
            )
        data = secret.get("data") or {}
        values: list[str] = []
        for ref in (username_ref, password_ref):
            try:
                values.append(base64.b64decode(data[ref.key], validate=True).decode())
            except (KeyError, ValueError):
                raise TopicAdminError(CREDENTIALS_MISSING, f"Secret {ref.name} has no usable key `{ref.key}`") from None
        return Login(values[0], values[1])

    def _run_sync(self, plan: KafkaAdminPlan, login: Login | None) -> TopicsOutcome:
        decision = sync_topics(self.topic_admin(plan, login), plan.topics)
        done = summary(decision)
        if done:
            log.info("kafka %s: %s", plan.bootstrap, done)
        return outcome_of(decision, len(plan.topics))

    async def _sync_topics(self, key: Key, plan: KafkaAdminPlan) -> tuple[TopicsOutcome, float | None]:
        """Bring the external Kafka's topics to the plan (at most every `topics_recheck` s when in sync;
        after a failure, again after a growing back-off). Never raises for Kafka's sake: the outcome is the
        `TopicsReady` condition. Returns (outcome, re-queue in)."""
        last = self._topics.get(key)
        now = time.monotonic()
        if last is not None and last.plan == plan:
            due = last.at + (self.topics_recheck if last.outcome.ready else retry_delay(last.failures))
            if now < due:
                return last.outcome, (None if last.outcome.ready else due - now)
        total = len(plan.topics)
        try:
            login = await self._kafka_login(key[0], plan)
            outcome = await asyncio.to_thread(self._run_sync, plan, login)
        except TopicAdminError as exc:
            outcome = failure(exc.reason, str(exc), total)
        except ApiError:
            raise  # transient (reading the Secret): the work queue retries with its back-off
        except Exception as exc:  # never crash the reconcile for Kafka's sake; no secret is in these messages
            log.exception("%s/%s: syncing topics failed", key[0], key[1])
            outcome = failure(TOPICS_FAILED, f"{type(exc).__name__}: {exc}", total)
        failures = 0 if outcome.ready else (last.failures + 1 if last is not None and last.plan == plan else 1)
        self._topics[key] = _TopicsSync(plan, outcome, time.monotonic(), failures)
        if not outcome.ready:
            metrics.ERRORS.labels(outcome.reason).inc()
            log.warning("%s/%s: topics not ready (%s, retry in %.0fs): %s", key[0], key[1], outcome.reason,
                        retry_delay(failures), outcome.message)
            return outcome, retry_delay(failures)
        return outcome, None

    # -- writes --

    async def _execute(self, key: Key, actions: Actions) -> tuple[list[Problem], float | None]:
        recent = self._recent.setdefault(key, {})
        problems: list[Problem] = []
        retry: float | None = None
        transient: list[BaseException] = []

        async def guarded(what: str, kind: str, coro: Any) -> None:
            nonlocal retry
            try:
                await coro
            except ApiError as exc:
                metrics.ERRORS.labels(f"api_{exc.status}").inc()
                if exc.transient:
                    transient.append(exc)
                elif kind == "Job" and exc.status == 422 and "immutable" in exc.message:
                    retry = 1.0  # replaced below: a Job's pod template cannot change
                else:
                    problems.append(Problem("ApplyFailed", f"{what}: {exc.reason}: {exc.message}"))
            except (OSError, TimeoutError) as exc:
                transient.append(exc)

        async def apply(d: Desired) -> None:
            if d.scaled:
                await self._hand_over_replicas(key[0], d.name)
            try:
                result = await self.client.apply_json(kind_of(d.kind), d.namespace, d.name, d.json)
            except ApiError as exc:
                if d.kind == "Job" and exc.status == 422 and "immutable" in exc.message:
                    await self.client.delete(kind_of("Job"), key[0], d.name)
                raise
            self._remember(recent, d, result)

        async def create(d: Desired) -> None:
            assert d.recipe is not None
            secret = {**d.obj, "stringData": generate_secret_data(d.recipe)}
            try:
                result = await self.client.create(secret)
            except ApiError as exc:
                if exc.status != 409:  # 409: it exists (the watch had not shown it yet): never overwrite
                    raise
                return
            self._remember(recent, d, result)

        async def orphan(obj: LiveObject, uid: str) -> None:
            await orphan_object(self.client, key[0], obj.kind, obj.name, uid)

        owner_uid = str(self.pipelines[key]["metadata"]["uid"])
        tasks = [guarded(f"{d.kind}/{d.name}", d.kind, create(d)) for d in actions.creates]
        tasks += [guarded(f"{d.kind}/{d.name}", d.kind, apply(d)) for d in actions.applies]
        tasks += [
            guarded(f"delete {o.kind}/{o.name}", o.kind, self.client.delete(kind_of(o.kind), key[0], o.name, uid=o.uid))
            for o in actions.deletes
        ]
        tasks += [guarded(f"orphan {o.kind}/{o.name}", o.kind, orphan(o, owner_uid)) for o in actions.orphans]
        if actions.writes:
            log.info(
                "%s/%s: applying %d, creating %d, deleting %d, orphaning %d object(s) (stage <= %d)",
                key[0], key[1], len(actions.applies), len(actions.creates), len(actions.deletes),
                len(actions.orphans), actions.allowed_stage,
            )
        await asyncio.gather(*tasks)
        if transient:
            raise TransientError(f"{len(transient)} write(s) failed transiently, first: {transient[0]}")
        return problems, retry

    async def _hand_over_replicas(self, namespace: str, name: str) -> None:
        """A scaler now owns this Deployment's `replicas`. Server-side apply would reset a field its only
        owner drops (to 1), so while the operator still owns it, another manager first takes the current
        count (the pattern Kubernetes documents for handing replicas to an HPA); the scaler's first change
        then takes it from that manager. No-op once the operator has let go."""
        kind = kind_of("Deployment")
        live = await self.client.get(kind, namespace, name)
        if live is None or not owns_field(live["metadata"], "spec", "replicas"):
            return
        replicas = int((live.get("spec") or {}).get("replicas") or 1)
        log.info("%s/%s: handing replicas (%d) over to the scaler", namespace, name, replicas)
        await self.client.apply({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }, field_manager=HANDOVER_MANAGER)

    @staticmethod
    def _remember(recent: dict[tuple[str, str], Applied], d: Desired, result: Mapping[str, Any]) -> None:
        meta = result.get("metadata") or {}
        rv = int(meta.get("resourceVersion") or 0)
        recent[(d.kind, d.name)] = Applied(d.hash, rv, time.monotonic(), managed_fingerprint(meta))

    def _adopt_baselines(self, key: Key, desired: list[Desired], live: LiveMap) -> None:
        """Objects found already right (e.g. after a restart) become the baseline for drift detection."""
        recent = self._recent.setdefault(key, {})
        for d in desired:
            current = live.get((d.kind, d.name))
            known = recent.get((d.kind, d.name))
            if current is not None and current.hash == d.hash and (known is None or known.hash != d.hash):
                recent[(d.kind, d.name)] = Applied(d.hash, current.resource_version, time.monotonic(), current.managed)

    async def _write_status(self, key: Key, body: Mapping[str, Any], obs: Observation) -> tuple[bool, float | None]:
        """Write the status if it changed: at once on a phase change, else at most every `status_interval`
        (bring-up moves many counters; one write can carry several). Returns (written, retry-in)."""
        previous = body.get("status") or {}
        status = build_status(obs, previous, now_rfc3339())
        if status == previous:
            self._status_slots.pop(key, None)
            return False, None
        rv = int(body["metadata"].get("resourceVersion") or 0)
        written = self._statuses.get(key)
        if written is not None and written[0] == status and rv < written[1]:
            return False, None  # we wrote exactly this already; the watch has not delivered it yet
        now = time.monotonic()
        since = now - written[2] if written is not None else None
        same_phase = previous.get("phase") == status["phase"] and previous.get("observedGeneration") == obs.generation
        if same_phase and since is not None:  # progress only (a first status is never held back)
            if since < self.status_interval:
                return False, self.status_interval - since
            slot = self._status_slots.get(key)
            if slot is None:
                slot = self._status_slots[key] = self.status_budget.reserve(now)
            if slot > now:
                return False, slot - now
        self._status_slots.pop(key, None)
        result = await self.client.merge_patch(PIPELINE, key[0], key[1], {"status": status}, subresource="status")
        new_rv = int((result.get("metadata") or {}).get("resourceVersion") or 0)
        self._statuses[key] = (status, new_rv, time.monotonic())
        if previous.get("phase") != status["phase"]:
            await self._event(body, previous.get("phase"), status)
        return True, None

    async def _event(self, body: Mapping[str, Any], before: str | None, status: Mapping[str, Any]) -> None:
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        warning = status["phase"] in ("Degraded", "Failed")
        try:
            await self.client.post_event(
                body, type_="Warning" if warning else "Normal", reason=str(ready["reason"]),
                note=f"{before or 'New'} -> {status['phase']}: {ready['message']}", now=now_micro(),
                instance=self.instance,
            )
        except ApiError as exc:  # an Event is best effort
            log.warning("could not post an event: %s", exc)

    # -- deletion --

    async def finalize(self, namespace: str, name: str, body: Mapping[str, Any]) -> list[str]:
        """Under `Retain`, orphan the retained objects (fresh LIST, not the cache: nothing may slip to GC)
        and keep an external Kafka's managed topics; under `Delete`, delete those topics through the Admin
        API (raises TopicAdminError when Kafka does not let us). Returns what was kept. A missing CRD or
        namespace is not an error: the finalizer always goes."""
        policy = ((body.get("spec") or {}).get("deletionPolicy")) or "Retain"
        admin = _admin_plan_of(namespace, body)
        orphaned: list[str] = []
        if admin is not None and policy == "Delete":
            login = await self._kafka_login(namespace, admin)
            deleted = await asyncio.to_thread(lambda: delete_topics(self.topic_admin(admin, login), admin.topics))
            log.info("%s/%s: deletionPolicy Delete: deleted Kafka topics %s", namespace, name,
                     ", ".join(deleted) or "(none existed)")
        elif admin is not None:
            orphaned += [f"Kafka topic {t.name}" for t in admin.topics]
        if policy != "Retain":
            return []  # owner references + garbage collection delete the rest
        uid = str(body["metadata"]["uid"])
        for kind_name in RETAINED_KINDS:
            kind = kind_of(kind_name)
            try:
                found = await self.client.request(
                    "GET", kind.path(namespace), params={"labelSelector": f"{LABEL_PIPELINE}={name}"}
                )
            except ApiError as exc:
                if exc.status == 404:
                    continue  # the CRD (or namespace) is gone: nothing to keep
                raise
            for item in found.get("items") or ():
                refs = item["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    await orphan_object(self.client, namespace, kind_name, item["metadata"]["name"], uid)
                    orphaned.append(f"{kind_name}/{item['metadata']['name']}")
        return orphaned


def _admin_plan_of(namespace: str, body: Mapping[str, Any]) -> KafkaAdminPlan | None:
    """The Admin API plan of a (deleted) Pipeline's body; None without `manageTopics` or with a bad spec."""
    try:
        return kube_plan(parse_pipeline(pipeline_document(body)), namespace).kafka_admin
    except SpecError:
        return None
    except Exception:  # a spec the planner chokes on (reported as RenderFailed while it lived): nothing to do
        log.exception("planning the deleted Pipeline %s/%s failed", namespace, (body.get("metadata") or {}).get("name"))
        return None


async def orphan_object(client: KubeClient, namespace: str, kind_name: str, name: str, owner_uid: str) -> None:
    """Remove `owner_uid` from the object's owner references (and forget its applied hash, so a new
    Pipeline of the same name re-adopts it). The object stays."""
    kind = kind_of(kind_name)
    current = await client.get(kind, namespace, name)
    if current is None:
        return
    refs = [r for r in current["metadata"].get("ownerReferences") or () if r.get("uid") != owner_uid]
    patch = {
        "metadata": {
            "ownerReferences": refs or None,
            "annotations": {ANNOTATION_HASH: None},
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
    }
    try:
        await client.merge_patch(kind, namespace, name, patch)
    except ApiError as exc:
        if exc.status == 404:
            return
        raise
