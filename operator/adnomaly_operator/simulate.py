"""Stand-ins for the two operators a bare control plane lacks, for tests and benchmarks (never used in
production). Their images cannot be pulled here, so neither can run, on kwok's nodes or on the real node:

- Strimzi: marks `Kafka` and `KafkaTopic` objects Ready (status subresource, `observedGeneration`); for a
  `KafkaUser`, first writes its credentials Secret (same name, random `password`, `sasl.jaas.config`,
  owned by the user) as Strimzi's User Operator does;
- the Flink Kubernetes Operator: marks `FlinkDeployment`s `STABLE` with a `RUNNING` job.

Everything else is real: node heartbeats are kwok's (`--node-lease-duration-seconds`), claims are bound by
the PersistentVolume controller with the controller-manager's host-path provisioner
(adnomaly.services.kube), and pods, volumes, DNS and Services come from a real node in the e2e suite
(adnomaly.services.node).

It polls (every `interval` seconds) and writes only what is not yet in the wanted state, exactly as the
real operators would, so the Adnomaly operator sees real status transitions on real objects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
import yaml

from adnomaly_operator.client import ApiError, KubeClient
from adnomaly_operator.live import readiness
from adnomaly_operator.resources import Kind, kind_of

SECRET = Kind("v1", "Secret", "secrets")
SIMULATED_LABEL = "adnomaly.io/simulated"


def connection_from_kubeconfig(path: Path) -> kopf.ConnectionInfo:
    """The current context of a kubeconfig with inline (base64) certificate data."""
    config = yaml.safe_load(Path(path).read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def decoded(value: str | None) -> str | None:
        return base64.b64decode(value).decode() if value else None

    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_data=decoded(cluster.get("certificate-authority-data")),
        certificate_data=decoded(user.get("client-certificate-data")),
        private_key_data=decoded(user.get("client-key-data")),
        token=user.get("token"),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def strimzi_ready_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}],
    }


def flink_ready_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "lifecycleState": "STABLE",
        "jobManagerDeploymentStatus": "READY",
        "jobStatus": {"state": "RUNNING", "jobName": obj["metadata"]["name"]},
    }


def strimzi_user_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    return {**strimzi_ready_status(obj), "username": name, "secret": name}


def strimzi_user_secret(user: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret Strimzi's User Operator writes for a SCRAM-SHA-512 KafkaUser (fresh random password)."""
    meta = user["metadata"]
    password = secrets.token_urlsafe(24)
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{meta["name"]}" '
            f'password="{password}";')
    data = {"password": password, "sasl.jaas.config": jaas}
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"],
            "labels": {"strimzi.io/kind": "KafkaUser", "strimzi.io/cluster": (meta.get("labels") or {}).get(
                "strimzi.io/cluster", ""), SIMULATED_LABEL: "true"},
            "ownerReferences": [{"apiVersion": user["apiVersion"], "kind": "KafkaUser", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": False}],
        },
        "data": encoded,
    }


class Simulator:
    def __init__(
        self, client: KubeClient, *, strimzi: bool = True, flink: bool = True, namespace: str | None = None,
        interval: float = 0.5,
    ) -> None:
        self.client = client
        self.namespace = namespace  # None: every namespace
        self.strimzi = strimzi
        self.flink = flink
        self.interval = interval
        self.status_patches = 0

    async def _ready_all(self, kind_name: str, status_of: Any) -> None:
        kind = kind_of(kind_name)
        try:
            items = (await self.client.request("GET", kind.path(self.namespace)))["items"]
        except ApiError as exc:
            if exc.status == 404:
                return
            raise

        async def make_ready(item: dict[str, Any]) -> None:
            meta = item["metadata"]
            with contextlib.suppress(ApiError):  # deleted meanwhile
                await self.client.merge_patch(kind, meta["namespace"], meta["name"], {"status": status_of(item)},
                                              subresource="status")
                self.status_patches += 1

        pending = [i for i in items if not readiness(kind_name, i)[0] and not i["metadata"].get("deletionTimestamp")]
        await asyncio.gather(*(make_ready(item) for item in pending))

    async def _users(self) -> None:
        kind = kind_of("KafkaUser")
        try:
            users = (await self.client.request("GET", kind.path(self.namespace)))["items"]
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        for user in users:
            meta = user["metadata"]
            if readiness("KafkaUser", user)[0] or meta.get("deletionTimestamp"):
                continue
            with contextlib.suppress(ApiError):  # 409: written on an earlier pass
                await self.client.request("POST", SECRET.path(meta["namespace"]), body=strimzi_user_secret(user))
        await self._ready_all("KafkaUser", strimzi_user_status)

    async def step(self) -> None:
        if self.strimzi:
            await self._ready_all("Kafka", strimzi_ready_status)
            await self._ready_all("KafkaTopic", strimzi_ready_status)
            await self._users()
        if self.flink:
            await self._ready_all("FlinkDeployment", flink_ready_status)

    async def _every(self, interval: float, work: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(ApiError, OSError, TimeoutError):
                await work()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def run(self, stop: asyncio.Event) -> None:
        await self._every(self.interval, self.step, stop)


class SimulatorThread:
    """Run a Simulator in a background thread (for synchronous tests and benchmarks)."""

    def __init__(self, kubeconfig: Path, **options: Any) -> None:
        self._kubeconfig = kubeconfig
        self._options = options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.simulator: Simulator | None = None

    def _main(self) -> None:
        async def body() -> None:
            client = KubeClient(connection_from_kubeconfig(self._kubeconfig), max_in_flight=8)
            self.simulator = Simulator(client, **self._options)
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            try:
                await self.simulator.run(self._stop)
            finally:
                await client.close()

        asyncio.run(body())

    def start(self) -> SimulatorThread:
        self._thread = threading.Thread(target=self._main, name="cluster-simulator", daemon=True)
        self._thread.start()
        self._started.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
