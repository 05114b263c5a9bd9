"""Kopf wiring: watches, indices, the drift timer, the finalizer, settings. Thin: decisions live elsewhere.

- Pipelines are watched with `on.event` (no kopf bookkeeping writes per change) and queued.
- Every owned kind is watched through a kopf index (server-side label selector), so reconciles read a
  fresh in-memory view; kopf fills all indices before any handler runs, so a restarted operator sees
  what exists and writes nothing that is already right. An owned object's change queues its Pipeline,
  unless only its resourceVersion moved (`live.moved`): most events of a bring-up are controllers
  rewriting conditions and intermediate counters, and each used to cost a whole no-op reconcile.
- Every handler is a coroutine. Kopf runs a plain function in a thread pool, which would cost two thread
  hops per watch event and, worse, touch the work queue and the reconciler's state from threads while the
  event loop's workers use them (a key marked dirty just after its worker looked would be lost until the
  next drift check).
- A timer re-queues each Pipeline every `drift_interval` seconds: the periodic drift check.
- `on.delete` is the finalizer: under `Retain` it orphans topics and generated secrets (and keeps an external
  Kafka's managed topics); under `Delete` it deletes those through the Admin API; it never blocks deletion
  for long (a missing CRD or namespace is fine; after a few transient failures it lets go).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from adnomaly.kafka_client import KafkaAdminError

from adnomaly_operator import metrics
from adnomaly_operator.actions import Capabilities
from adnomaly_operator.budget import WriteBudget
from adnomaly_operator.client import ApiError, KubeClient
from adnomaly_operator.live import LiveObject, moved, summarize
from adnomaly_operator.names import FINALIZER, LABEL_MANAGED_BY, LABEL_PIPELINE, MANAGED_BY
from adnomaly_operator.reconcile import Key, LiveMap, Reconciler
from adnomaly_operator.render import Images
from adnomaly_operator.resources import OWNED_KINDS, PIPELINE, Kind
from adnomaly_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)

CAPABILITY_PROBES = {
    "strimzi": ("kafka.strimzi.io/v1", "kafkas"),
    "flink": ("flink.apache.org/v1beta1", "flinkdeployments"),
    "service_monitor": ("monitoring.coreos.com/v1", "servicemonitors"),
    "keda": ("keda.sh/v1alpha1", "scaledobjects"),
}


@dataclass
class OperatorConfig:
    drift_interval: float = 60.0
    workers: int = 16
    status_interval: float = 2.0  # seconds between one Pipeline's progress-only status writes
    status_rate: float = 10.0  # progress-only status writes per second, whole fleet (adnomaly_operator.budget)
    discovery_interval: float = 30.0
    images: Images = field(default_factory=Images)
    instance: str = "adnomaly-operator"
    watch_server_timeout: int = 300  # seconds, an integer in the API
    watch_client_timeout: float = 330.0
    watch_connect_timeout: float = 10.0


def index_id(kind: Kind) -> str:
    return f"owned_{kind.plural}"


class Runtime:
    """What the handlers share: the API client, the reconciler, its queue, the indices."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.client: KubeClient | None = None
        self.connected = asyncio.Event()
        # What is rendered depends on the installed APIs (KEDA: who owns autoscaled replicas), so nothing
        # is reconciled before the first discovery: a wrong guess would be written, then taken back.
        self.discovered = asyncio.Event()
        self.indices: dict[str, Mapping[Key, Any]] = {}
        self.reconciler: Reconciler | None = None
        self.queue: WorkQueue[Key] = WorkQueue(self._reconcile, workers=config.workers)
        self._unmoved: set[str] = set()  # owned objects (uids) whose latest event moved only the resourceVersion
        self._tasks: list[asyncio.Task[None]] = []

    def live_of(self, key: Key) -> LiveMap:
        out: LiveMap = {}
        for index in self.indices.values():
            if key in index:
                for obj in index[key]:
                    out[(obj.kind, obj.name)] = obj
        return out

    def capture_indices(self, kwargs: Mapping[str, Any]) -> None:
        if len(self.indices) < len(OWNED_KINDS):
            self.indices = {k: v for k, v in kwargs.items() if k.startswith("owned_")}

    def note_owned(self, key: Key, summary: LiveObject, index: Mapping[Key, Any] | None) -> None:
        """From an owned kind's indexer, before its index takes `summary`: did the object move?"""
        before = None
        if index is not None and key in index:
            before = next((o for o in index[key] if o.name == summary.name), None)
        if moved(before, summary):
            self._unmoved.discard(summary.uid)
        else:
            self._unmoved.add(summary.uid)

    def owned_event(self, key: Key, uid: str, deleted: bool) -> None:
        """An owned object's event, after its indexer ran (kopf indexes an event before its handlers see
        it): queue the Pipeline unless nothing its reconcile reads has moved. A deletion always queues it
        (kopf calls no indexer for one), and so does any event while the Pipeline waits for the watch to
        show its own write."""
        unmoved = uid in self._unmoved
        self._unmoved.discard(uid)
        waiting = self.reconciler is not None and key in self.reconciler.waiting_on_cache
        queue = deleted or not unmoved or waiting
        metrics.OWNED_EVENTS.labels("true" if queue else "false").inc()
        if queue:
            self.queue.add(key)

    async def _reconcile(self, key: Key) -> float | None:
        await self.connected.wait()
        await self.discovered.wait()
        assert self.reconciler is not None
        return await self.reconciler.reconcile(key)

    def connect(self, info: kopf.ConnectionInfo) -> None:
        if self.client is None:
            self.client = KubeClient(info)
            self.reconciler = Reconciler(
                self.client, self.live_of, images=self.config.images, instance=self.config.instance,
                status_interval=self.config.status_interval,
                status_budget=WriteBudget(self.config.status_rate, burst=max(1, int(2 * self.config.status_rate))),
            )
            self.connected.set()

    async def discover(self) -> None:
        """Which optional APIs exist (Strimzi, Flink, Prometheus Operator, KEDA); re-queue all on change."""
        await self.connected.wait()
        assert self.client is not None and self.reconciler is not None
        while True:
            try:
                found = {name: await self.client.serves(gv, plural) for name, (gv, plural) in CAPABILITY_PROBES.items()}
            except (ApiError, OSError, TimeoutError) as exc:
                log.warning("API discovery failed (will retry): %s", exc)
            else:
                caps = Capabilities(**found)
                if caps != self.reconciler.capabilities:
                    log.info("cluster capabilities: %s", caps)
                    self.reconciler.capabilities = caps
                    for key in list(self.reconciler.pipelines):
                        self.queue.add(key)
                self.discovered.set()
            await asyncio.sleep(self.config.discovery_interval if self.discovered.is_set() else 1.0)

    def start(self) -> None:
        self.queue.start()
        self._tasks.append(asyncio.create_task(self.discover(), name="discovery"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.queue.stop()
        if self.client is not None:
            await self.client.close()


class PipelinesOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf's diff-base ("essence") of an object, for Pipelines only.

    Kopf builds an essence on every watch event of every watched kind, before it knows whether any handler
    will look at it, and building one deep-copies the whole object (status and managedFields included)
    only to throw most of it away. Only the Pipeline has handlers that compare essences (`on.delete` makes
    kopf track its changes); every owned kind is only indexed and queued, and owned objects send most of
    the events. With a hundred Pipelines coming up, kopf's cause detection was 16.8 % of the operator's busy
    main thread, most of it these copies; 5.2 % with this (py-spy, `adnomaly bench operator --pipelines 100`).
    An owned object's essence is left empty: no handler reads it, and it is never stored.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if body.get("kind") != PIPELINE.kind or not str(body.get("apiVersion", "")).startswith(f"{PIPELINE.group}/"):
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="adnomaly.io")
    settings.persistence.diffbase_storage = PipelinesOnlyDiffBase(
        prefix="adnomaly.io", key="last-handled-configuration"
    )
    # Silent stalls of watch streams are a known kopf failure mode: bound every watch request.
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_client_timeout
    settings.watching.connect_timeout = config.watch_connect_timeout
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.WARNING  # our own Events mark transitions; kopf posts only problems
    owned = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_PIPELINE}"  # server-side: never stream others' objects
    for kind in OWNED_KINDS:
        settings.watching.label_selectors[kind.api_version, kind.plural] = owned
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one "succeeded" line per watch event


def _owned_index(kind: Kind, runtime: Runtime) -> Any:
    async def index(
        body: kopf.Body, namespace: str, labels: Mapping[str, str], **kwargs: Any
    ) -> dict[Key, LiveObject]:
        key = (namespace, labels[LABEL_PIPELINE])
        summary = summarize(kind.kind, body)
        runtime.note_owned(key, summary, kwargs.get(index_id(kind)))  # the index still holds the last one
        return {key: summary}

    index.__name__ = index_id(kind)
    return index


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> Runtime:
    runtime = Runtime(config)
    group, version, plural = PIPELINE.group, PIPELINE.version, PIPELINE.plural
    owned_filter = {LABEL_PIPELINE: kopf.PRESENT}

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, config)
        runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            runtime.connect(info)
        return info

    @kopf.on.probe(id="queued", registry=registry)
    async def queued(**_: Any) -> int:
        return len(runtime.queue)

    for kind in OWNED_KINDS:
        kopf.index(
            group=kind.group, version=kind.version, plural=kind.plural, id=index_id(kind), labels=owned_filter,
            registry=registry,
        )(_owned_index(kind, runtime))

        @kopf.on.event(
            group=kind.group, version=kind.version, plural=kind.plural, labels=owned_filter, registry=registry,
            id=f"watch_{kind.plural}",
        )
        async def owned_changed(
            event: Mapping[str, Any], namespace: str, uid: str, labels: Mapping[str, str], **kwargs: Any
        ) -> None:
            runtime.capture_indices(kwargs)
            runtime.owned_event((namespace, labels[LABEL_PIPELINE]), uid, event.get("type") == "DELETED")

    @kopf.on.event(group=group, version=version, plural=plural, registry=registry)
    async def pipeline_changed(event: Mapping[str, Any], namespace: str, name: str, **kwargs: Any) -> None:
        runtime.capture_indices(kwargs)
        key = (namespace, name)
        if runtime.reconciler is None:
            return
        if event.get("type") == "DELETED":
            runtime.reconciler.observe_pipeline(key, None)
            runtime.queue.forget(key)
            return
        runtime.reconciler.observe_pipeline(key, event["object"])
        if not runtime.reconciler.own_status_echo(key, event["object"]):
            runtime.queue.add(key)

    @kopf.timer(group=group, version=version, plural=plural, interval=config.drift_interval,
                initial_delay=config.drift_interval, registry=registry)
    async def drift_check(namespace: str, name: str, **_: Any) -> None:
        runtime.queue.add((namespace, name))

    @kopf.on.delete(group=group, version=version, plural=plural, registry=registry, retries=5, backoff=2)
    async def finalize(
        body: kopf.Body, namespace: str, name: str, retry: int, logger: logging.Logger, **_: Any
    ) -> None:
        key = (namespace, name)
        await runtime.queue.block(key)
        await runtime.connected.wait()
        assert runtime.reconciler is not None
        try:
            kept = await runtime.reconciler.finalize(namespace, name, body)
        except (ApiError, OSError, TimeoutError, KafkaAdminError) as exc:  # Kafka: deleting managed topics
            transient = not isinstance(exc, ApiError) or exc.transient
            if transient and retry < 4:
                raise kopf.TemporaryError(f"cleanup failed, retrying: {exc}", delay=2) from exc
            logger.warning("cleanup incomplete, removing the finalizer anyway: %s", exc)
            return
        if kept:
            log.info("%s/%s: deletionPolicy Retain: kept %s", namespace, name, ", ".join(kept))

    return runtime
