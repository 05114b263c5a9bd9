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

Like the real operators it lists each kind once and then follows its watch, writing only what is not yet
in the wanted state, so the Adnomaly operator sees real status transitions on real objects and the API
server does the work a real cluster's operators would cause. (It used to list every kind every half
second instead: on an idle cluster holding 200 Pipelines' objects those lists alone took a third of a
core of the API server and a quarter of one in this process, which `adnomaly bench operator` charged to
whichever phase ran longer.) `interval` is the pause before listing again after a failure, or while a
kind's CRD is not installed.
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

import aiohttp
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


STATUS_OF = {"Kafka": strimzi_ready_status, "KafkaTopic": strimzi_ready_status, "KafkaUser": strimzi_user_status,
             "FlinkDeployment": flink_ready_status}


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
        self._writing: set[tuple[str, str, str]] = set()  # (kind, namespace, name) being written
        self._tasks: set[asyncio.Task[None]] = set()

    async def _make_ready(self, kind_name: str, item: dict[str, Any]) -> None:
        """Write what the real operator would for an object that is not (or no longer) in the wanted state."""
        meta = item["metadata"]
        if readiness(kind_name, item)[0] or meta.get("deletionTimestamp"):
            return
        if kind_name == "KafkaUser":
            with contextlib.suppress(ApiError):  # 409: written on an earlier pass
                await self.client.request("POST", SECRET.path(meta["namespace"]), body=strimzi_user_secret(item))
        with contextlib.suppress(ApiError):  # deleted meanwhile
            await self.client.merge_patch(kind_of(kind_name), meta["namespace"], meta["name"],
                                          {"status": STATUS_OF[kind_name](item)}, subresource="status")
            self.status_patches += 1

    def _soon(self, kind_name: str, item: dict[str, Any]) -> None:
        """`_make_ready` without holding up the watch (a burst of new topics is written concurrently, as the
        lists used to be); an object already being written is left to that write."""
        meta = item["metadata"]
        key = (kind_name, str(meta.get("namespace")), str(meta.get("name")))
        if key in self._writing:
            return
        self._writing.add(key)
        task = asyncio.create_task(self._make_ready(kind_name, item))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._writing.discard(key)

        task.add_done_callback(finished)

    async def _follow(self, kind_name: str, stop: asyncio.Event) -> None:
        """List `kind_name`, bring what is pending to its wanted state, then follow the watch from the list's
        resourceVersion; list again when the watch ends or fails (or after `interval`, on errors)."""
        kind = kind_of(kind_name)
        while not stop.is_set():
            try:
                listing = await self.client.request("GET", kind.path(self.namespace))
                await asyncio.gather(*(self._make_ready(kind_name, item) for item in listing["items"]))
                version = listing["metadata"]["resourceVersion"]
                async for event in self.client.watch(kind, self.namespace, version):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._soon(kind_name, event["object"])
                    elif event.get("type") == "ERROR":  # e.g. 410 Gone: the version is too old, list again
                        break
                continue
            except (ApiError, OSError, TimeoutError, aiohttp.ClientError, ValueError):  # 404: no CRD (yet)
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def kinds(self) -> list[str]:
        return [*(("Kafka", "KafkaTopic", "KafkaUser") if self.strimzi else ()),
                *(("FlinkDeployment",) if self.flink else ())]

    async def run(self, stop: asyncio.Event) -> None:
        followers = [asyncio.create_task(self._follow(kind, stop), name=f"simulate-{kind}") for kind in self.kinds()]
        try:
            await stop.wait()
        finally:
            for task in [*followers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*followers, *self._tasks, return_exceptions=True)


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
