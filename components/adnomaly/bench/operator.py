"""`adnomaly bench operator --pipelines N [--json]`: the Kubernetes operator at scale.

Starts a real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok; see
`adnomaly.services.kube`), installs the Pipeline CRD and the upstream Strimzi / Flink CRDs, runs
`adnomaly-operator`, applies N Pipelines at once and measures:

- `seconds_to_ready`: from submitting the N Pipelines (concurrently) until every one reports `phase: Ready`
  (Strimzi's and the Flink operator's readiness are simulated by status patches as those operators would
  write them; claims are bound by the PersistentVolume controller from the controller-manager's host-path
  provisioner; Deployments and StatefulSets become available through kwok's kubelets);
- `writes_per_noop_reconcile`: API writes per reconcile once everything is Ready (drift checks keep
  reconciling; the target is 0);
- `operator_rss_mb`: the operator process's resident memory at the end.

Also reported: `seconds_to_deployments` (every component Deployment exists: the operator's own bring-up
path through stores, Kafka and topics), the operator's CPU seconds, and the machine's load average (the
control plane shares the CPUs with everything else running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "bench"


def fleet(count: int) -> list[dict[str, Any]]:
    """N small but complete Pipelines (generator, ingest, processor, lake sink, Kafka, PostgreSQL, MinIO)."""
    return [
        {
            "apiVersion": "adnomaly.io/v1alpha1",
            "kind": "Pipeline",
            "metadata": {"name": f"p{index:03d}"},
            "spec": {"events": {"schema": "clickstream"}, "source": {"generator": {"eventsPerSecond": 10}}},
        }
        for index in range(count)
    ]


def fleet_manifest(count: int) -> str:
    return yaml.safe_dump_all(fleet(count), sort_keys=False)


def submit(kubeconfig: Path, docs: list[dict[str, Any]]) -> None:
    """Create every Pipeline at once (as many clients would), not one by one like a single kubectl."""
    from adnomaly_operator.client import KubeClient
    from adnomaly_operator.simulate import connection_from_kubeconfig

    async def create_all() -> None:
        client = KubeClient(connection_from_kubeconfig(kubeconfig), max_in_flight=32)
        try:
            await asyncio.gather(*(client.create({**doc, "metadata": {**doc["metadata"], "namespace": NAMESPACE}})
                                   for doc in docs))
        finally:
            await client.close()

    asyncio.run(create_all())


def _phases(kube: Any) -> dict[str, int]:
    found = json.loads(kube.kubectl("get", "pipelines", f"--namespace={NAMESPACE}", "-o", "json").stdout)
    phases: dict[str, int] = {}
    for item in found["items"]:
        phase = (item.get("status") or {}).get("phase") or "New"
        phases[phase] = phases.get(phase, 0) + 1
    return phases


def _deployments(kube: Any) -> int:
    found = json.loads(kube.kubectl("get", "deployments", f"--namespace={NAMESPACE}", "-o", "json").stdout)
    return len(found["items"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly_operator.desired import kube_plan
    from adnomaly_operator.render import Owner, RenderContext, render
    from adnomaly_operator.simulate import SimulatorThread
    from adnomaly_operator.testing import OperatorProcess, install_crds, wait_for

    from adnomaly.services.kube import KubeControlPlane
    from adnomaly.spec import parse_pipeline

    count = args.pipelines
    docs = fleet(count)
    sample = parse_pipeline(docs[0])
    owner = Owner("adnomaly.io/v1alpha1", "Pipeline", sample.name, "uid")
    desired = render(kube_plan(sample, NAMESPACE), RenderContext(owner))
    deployments = count * sum(1 for d in desired if d.kind == "Deployment")
    state = Path(tempfile.mkdtemp(prefix="adnomaly-bench-operator-"))
    try:
        with KubeControlPlane(state / "kube", nodes=args.nodes) as kube:
            install_crds(kube)
            kube.kubectl("create", "namespace", NAMESPACE)
            with SimulatorThread(kube.kubeconfig, interval=0.5):
                operator = OperatorProcess(kube, state, namespace=NAMESPACE, drift_interval=args.drift_interval,
                                           workers=args.workers).start()
                try:
                    started = time.monotonic()
                    submit(kube.kubeconfig, docs)
                    wait_for(lambda: _deployments(kube) == deployments, args.timeout,
                             "every component Deployment to exist", interval=1.0)
                    seconds_to_deployments = time.monotonic() - started
                    wait_for(lambda: _phases(kube).get("Ready") == count, args.timeout,
                             f"{count} Pipelines to be Ready", interval=1.0)
                    seconds_to_ready = time.monotonic() - started
                    writes_before = operator.quiet_writes()
                    noops_before = operator.total("adnomaly_operator_reconciles_total", result="noop")
                    time.sleep(args.noop_window)
                    writes = operator.writes() - writes_before
                    noops = operator.total("adnomaly_operator_reconciles_total", result="noop") - noops_before
                    rss = operator.rss_mb()
                    cpu = operator.cpu_seconds()
                finally:
                    operator.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {
        "pipelines": count,
        "objects_per_pipeline": len(desired),
        "seconds_to_deployments": round(seconds_to_deployments, 1),
        "seconds_to_ready": round(seconds_to_ready, 1),
        "noop_reconciles": int(noops),
        "writes_per_noop_reconcile": round(writes / noops, 3) if noops else None,
        "operator_rss_mb": round(rss, 1),
        "operator_cpu_seconds": round(cpu, 1),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("operator", help="time N Pipelines to Ready on a local control plane")
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=2, help="fake (kwok) nodes")
    parser.add_argument("--workers", type=int, default=8, help="the operator's concurrent reconciles")
    parser.add_argument("--drift-interval", type=float, default=5.0)
    parser.add_argument("--noop-window", type=float, default=15.0, help="seconds of steady state to measure")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
