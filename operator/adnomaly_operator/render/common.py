"""Shared pieces of rendering: the render context, object metadata, hashing, security defaults. Pure."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from adnomaly_operator.desired import KubePlan, SecretKeyRef
from adnomaly_operator.names import ANNOTATION_HASH, pipeline_labels

Obj = dict[str, Any]

# Stages of the ordered bring-up: an object is created/updated only when every workload of the
# earlier stages is ready. Objects already present keep being reconciled regardless.
STAGE_BASE = 0  # accounts, config, secrets, services, policies: no readiness of their own
STAGE_STORES = 1  # Kafka (+ node pool), PostgreSQL, MinIO (+ bucket), Redis
STAGE_TOPICS = 2  # KafkaTopics (need a ready Kafka)
STAGE_APPS = 3  # the Flink job and the component Deployments (need topics and stores)

VERSION = "0.1.0"


@dataclass(frozen=True)
class Images:
    component: str = f"ghcr.io/adnomaly/adnomaly:{VERSION}"
    flink: str = f"ghcr.io/adnomaly/adnomaly-flink:{VERSION}"
    postgres: str = "docker.io/library/postgres:17.6"
    minio: str = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    minio_client: str = "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"
    redis: str = "docker.io/library/redis:8.2.1"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Images:
        """Overrides from ADNOMALY_IMAGE_<FIELD> (e.g. ADNOMALY_IMAGE_COMPONENT)."""
        source = os.environ if env is None else env
        defaults = cls()
        return cls(**{
            name: source.get(f"ADNOMALY_IMAGE_{name.upper()}", getattr(defaults, name))
            for name in cls.__dataclass_fields__
        })


@dataclass(frozen=True)
class Owner:
    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> Obj:
        return {
            "apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid,
            "controller": True, "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class RenderContext:
    owner: Owner
    images: Images = field(default_factory=Images)
    service_monitor: bool = False  # the ServiceMonitor CRD exists in the cluster
    keda: bool = True  # KEDA's CRDs exist: it, not the operator, sets autoscaled consumers' replicas


@dataclass(frozen=True)
class SecretRecipe:
    """A secret the operator generates once: `random` keys get fresh random tokens of the given size,
    `templates` are formatted from them (`{password}`), so e.g. a DSN always matches its password."""

    random: dict[str, int]
    templates: dict[str, str] = field(default_factory=dict)
    alphanumeric: bool = False


class Desired:
    """One object the operator wants, with how it takes part in bring-up, status and deletion; sealed
    (its content hash annotation added, see `sealed`) as it is made.

    The object is kept packed (compact JSON, zlib level 1) and `obj` unpacks a fresh copy on each use:
    the reconciler keeps every Pipeline's render between passes, and as nested dicts those were a third of
    the operator's memory at 1,000 Pipelines (tracemalloc, `manifests/pipeline.yaml`'s 55 objects: 263 KB
    as dicts, 52 KB packed). Only a write needs the whole object, and an apply sends
    its JSON as it is kept (`json`: decompressed, never decoded); what every pass compares (kind, name,
    content hash, a KafkaTopic's partitions) is read once, as the object is sealed. Packing adds
    ~3 ms to a 12 ms render (once per generation); unpacking one object costs ~40 µs, a write's round trip
    milliseconds. Treat it as immutable: it is hashed and compared by value.
    """

    __slots__ = (
        "_packed", "hash", "kind", "name", "namespace", "partitions", "recipe", "retain", "scaled", "stage",
        "status_key",
    )

    def __init__(
        self, obj: Obj, stage: int, status_key: str | None = None, retain: bool = False,
        recipe: SecretRecipe | None = None,
    ) -> None:
        obj = sealed(obj)
        self.kind = str(obj["kind"])
        self.name = str(obj["metadata"]["name"])
        self.namespace = obj["metadata"].get("namespace")
        self.hash = str(obj["metadata"]["annotations"][ANNOTATION_HASH])
        # A KafkaTopic's partitions: checked against the live topic on every pass (they may never decrease).
        self.partitions = int(obj["spec"]["partitions"]) if self.kind == "KafkaTopic" else None
        # A Deployment without `replicas` has them set by a scaler (KEDA), which the operator hands them to.
        self.scaled = self.kind == "Deployment" and "replicas" not in obj["spec"]
        self.stage = stage
        self.status_key = status_key  # the `status.components` entry this object counts toward
        self.retain = retain  # kept (and orphaned) on deletion under `deletionPolicy: Retain`
        self.recipe = recipe  # generated Secret: created once with these contents
        # No sort_keys: the unpacked object keeps the renderer's key order (what `adnomaly render` prints).
        self._packed = zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)

    @property
    def obj(self) -> Obj:
        """A fresh copy of the object: changing it changes nothing here."""
        value: Obj = json.loads(self.json)
        return value

    @property
    def json(self) -> bytes:
        """The object as compact JSON, what an apply sends."""
        return zlib.decompress(self._packed)

    def _identity(self) -> tuple[bytes, int, str | None, bool, SecretRecipe | None]:
        return (self._packed, self.stage, self.status_key, self.retain, self.recipe)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Desired) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((self._packed, self.stage, self.status_key, self.retain))

    def __repr__(self) -> str:
        return f"Desired({self.kind}/{self.name}, stage={self.stage}, status_key={self.status_key!r})"


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:length]


def metadata(
    kp: KubePlan, ctx: RenderContext, name: str, component: str, *, tier: str | None = None,
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, owned: bool = True,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": kp.namespace,
        "labels": {**pipeline_labels(kp.name, component, tier), **(labels or {})},
        "annotations": dict(annotations or {}),
    }
    if owned:
        meta["ownerReferences"] = [ctx.owner.reference()]
    return meta


def obj(api_version: str, kind: str, meta: Obj, **body: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def sealed(o: Obj) -> Obj:
    """The object with its content hash annotation (the no-op test compares it with the live one)."""
    annotations = {k: v for k, v in o["metadata"].get("annotations", {}).items() if k != ANNOTATION_HASH}
    base = {**o, "metadata": {**o["metadata"], "annotations": annotations}}
    base["metadata"]["annotations"] = {**annotations, ANNOTATION_HASH: content_hash(base)}
    return base


POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}

CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_security(uid: int = 10001) -> Obj:
    return {**POD_SECURITY, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}


def secret_env(name: str, ref: SecretKeyRef) -> Obj:
    key_ref: Obj = {"name": ref.name, "key": ref.key}
    if ref.optional:
        key_ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": key_ref}}


def scratch_volume(name: str = "tmp", size: str = "64Mi") -> Obj:
    return {"name": name, "emptyDir": {"sizeLimit": size}}
