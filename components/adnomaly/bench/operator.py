"""`adnomaly bench operator --pipelines N [--json]`: the Kubernetes operator at scale.

Starts a real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok; see
`adnomaly.services.kube`), installs the Pipeline CRD and the upstream Strimzi / Flink CRDs, runs
`adnomaly-operator`, applies N Pipelines at once and measures:

- `seconds_to_ready`: from submitting the N Pipelines (concurrently) until every one reports `phase: Ready`
  (Strimzi's and the Flink operator's readiness are simulated by status patches as those operators would
  write them; claims are bound by the PersistentVolume controller from the controller-manager's host-path
  provisioner; Deployments and StatefulSets become available through kwok's kubelets);
- `writes_per_noop_reconcile`: API writes per reconcile once everything is Ready (drift checks, every
  `drift_interval` seconds per Pipeline, the operator's default unless `--drift-interval` says otherwise, keep
  reconciling; the target is 0);
- `operator_rss_mb`: the operator process's resident memory at the end;
- `operator_peak_rss_mb`: the most it had resident at any moment of the run (VmHWM);
- `reconciles_changed_to_ready` / `reconciles_noop_to_ready`: the reconciles until all were Ready that wrote
  something / nothing, and `owned_events_queued_to_ready` / `owned_events_skipped_to_ready`: the owned
  objects' watch events that queued their Pipeline / moved only a resourceVersion and queued nothing.

The ceiling, measured on the same control plane in the same run once the operator has stopped: the very
objects the operator wrote (the same renderer, in a namespace of their own, without owner references)
applied by a plain concurrent server-side-apply loop, all at once, with no ordering:
`ceiling_seconds_to_write` is the API server's own write rate for them, `ceiling_seconds_to_ready` adds the
platform's time (controller-manager, scheduler, volume provisioning, kwok, the simulated operators) to make
every workload ready. `ratio` = `ceiling_seconds_to_ready / seconds_to_ready`: 1.0 would mean the operator
adds nothing to what the platform needs anyway, including its ordered bring-up (stores and Kafka, then
topics, then components), which the ceiling skips; `write_ratio` = `ceiling_seconds_to_write /
seconds_to_ready`, the share of the time the API server needs just to take the writes. Both ceilings run
after the operator's run, beside its workloads, so on a loaded machine `ratio` can exceed 1.

The machine is shared and its speed swings from one minute to the next (steal), so the work is compared
too: `cpu_seconds_to_ready` is the CPU the control plane's processes (etcd, API server, controller-manager,
scheduler, kwok) and the operator used from submitting the Pipelines until all were Ready,
`ceiling_cpu_seconds_to_ready` the control plane's for the ceiling, and `cpu_ratio` the second over the
first: 1.0 would mean bringing the fleet up through the operator costs the platform no more work than
applying its objects. `cpu_steal_share` / `ceiling_cpu_steal_share` say how much of the machine the host
took away during each (the simulated operators run in this process and are counted in neither).

Also reported: `seconds_to_deployments` (every component Deployment exists: the operator's own bring-up
path through stores, Kafka and topics), the operator's CPU seconds, and the machine's load average (the
control plane shares the CPUs with everything else running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from adnomaly.bench.ceiling import machine_load, process_cpu_seconds, ratio, share, steal_times, with_ceiling

NAMESPACE = "bench"
# The operator's own default (`OperatorConfig.drift_interval`, `--drift-interval`): a fleet comes up under the
# drift checks it would have in production. The benchmark used 5 s until 2026-12-08, a test suite's period:
# at 100 Pipelines that is 20 extra reconciles a second, most of the no-op passes of a bring-up.
DRIFT_INTERVAL = 60.0


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


def ceiling_objects(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """What the operator would write for `docs` in `namespace`, as plain objects for a plain apply loop:
    no owner references (no Pipeline owns them; the garbage collector would take them) and generated
    Secrets with their contents, as the operator creates them."""
    from adnomaly_operator.desired import kube_plan
    from adnomaly_operator.reconcile import generate_secret_data
    from adnomaly_operator.render import Owner, RenderContext, render

    from adnomaly.spec import parse_pipeline

    objects = []
    for doc in docs:
        pipeline = parse_pipeline(doc)
        owner = Owner("adnomaly.io/v1alpha1", "Pipeline", pipeline.name, "uid")
        for desired in render(kube_plan(pipeline, namespace), RenderContext(owner)):
            obj = {**desired.obj, "metadata": {k: v for k, v in desired.obj["metadata"].items()
                                               if k != "ownerReferences"}}
            if desired.recipe is not None:
                obj["stringData"] = generate_secret_data(desired.recipe)
            objects.append(obj)
    return objects


# An API server taking tens of thousands of writes at once answers some late or with 429/5xx; a plain apply
# loop (kubectl, any controller) applies those again, and so does the ceiling, on the errors the operator
# itself treats as transient (`ApiError.transient`): server-side apply is idempotent. At 1,000 Pipelines
# (35,000 objects beside the operator's own) a single timeout used to end the whole benchmark without a figure.
APPLY_ATTEMPTS = 6


async def apply_retrying(client: Any, obj: dict[str, Any], pause: float = 1.0) -> None:
    """`client.apply(obj)`, again after a timeout, a dropped connection or a transient refusal (429, 5xx, ...;
    back-off doubling from `pause`, at most 10 s); the last failure is raised."""
    import aiohttp
    from adnomaly_operator.client import ApiError

    for attempt in range(APPLY_ATTEMPTS):
        try:
            await client.apply(obj)
            return
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure: Exception = exc
        except ApiError as exc:
            if not exc.transient:
                raise
            failure = exc
        if attempt == APPLY_ATTEMPTS - 1:
            raise failure
        await asyncio.sleep(min(pause * 2**attempt, 10.0))


def apply_all(kubeconfig: Path, objects: list[dict[str, Any]], max_in_flight: int) -> None:
    """Server-side apply every object at once through the operator's own client (same connection pool)."""
    from adnomaly_operator.client import KubeClient
    from adnomaly_operator.simulate import connection_from_kubeconfig

    async def apply() -> None:
        client = KubeClient(connection_from_kubeconfig(kubeconfig), max_in_flight=max_in_flight)
        try:
            await asyncio.gather(*(apply_retrying(client, obj) for obj in objects))
        finally:
            await client.close()

    asyncio.run(apply())


def ceiling_or_error(measure: Callable[[], dict[str, float]]) -> dict[str, float] | str:
    """The ceiling's figures, or why it could not be measured. The ceiling runs after the operator's own
    figures were taken: at 1,000 Pipelines the API server, holding the operator's 35,000 objects, answered
    one of another 35,000 applies late six times over, and that used to discard the operator's 44 minutes
    of measurement with it."""
    try:
        return measure()
    except Exception as exc:  # any failure of the ceiling: the figures above it stand on their own
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"{type(exc).__name__}: {first_line}".rstrip(": ")


def ceiling_fields(seconds_to_ready: float, ceiling: dict[str, float] | str, cpu_seconds: float | None = None,
                   ) -> dict[str, Any]:
    """The figure with its ceilings and ratios; with `ceiling_error` (and no ratios) when it failed.
    `cpu_seconds`: what the control plane and the operator used to bring the fleet up, against the control
    plane's CPU for the ceiling's (`cpu_ratio`, when both were measured)."""
    if isinstance(ceiling, str):
        return {"seconds_to_ready": seconds_to_ready, "ceiling_seconds_to_ready": None, "ratio": None,
                "ceiling_seconds_to_write": None, "write_ratio": None, "ceiling_error": ceiling}  # fmt: skip
    fields = {
        **with_ceiling("seconds_to_ready", seconds_to_ready, ceiling["ceiling_seconds_to_ready"],
                       higher_is_better=False),
        "ceiling_seconds_to_write": ceiling["ceiling_seconds_to_write"],
        "write_ratio": ratio(ceiling["ceiling_seconds_to_write"], seconds_to_ready),
    }
    ceiling_cpu = ceiling.get("ceiling_cpu_seconds_to_ready")
    if cpu_seconds is not None and ceiling_cpu is not None:
        fields |= {"ceiling_cpu_seconds_to_ready": ceiling_cpu, "cpu_ratio": ratio(ceiling_cpu, cpu_seconds),
                   "ceiling_cpu_steal_share": ceiling.get("ceiling_cpu_steal_share")}
    return fields


def control_plane_cpu_seconds(kube: Any) -> float:
    """CPU seconds the control plane's processes (etcd, API server, controller-manager, scheduler, kwok) have
    used so far."""
    return sum(process_cpu_seconds(p.pid) for p in kube.processes.values() if p.pid is not None)


def _workloads_ready(kube: Any, namespace: str) -> bool:
    """Every StatefulSet and Deployment has its replicas ready, every Job (MinIO's bucket) has completed and
    every Kafka is Ready: what a Pipeline's `Ready` waits for (KafkaTopics and users aside)."""
    found = json.loads(kube.kubectl("get", "statefulsets,deployments,jobs,kafkas", f"--namespace={namespace}",
                                    "-o", "json").stdout)
    for item in found["items"]:
        status = item.get("status") or {}
        if item["kind"] == "Kafka":
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
                return False
        elif item["kind"] == "Job":
            if (status.get("succeeded") or 0) < (item["spec"].get("completions") or 1):
                return False
        elif (status.get("readyReplicas") or 0) < (item["spec"].get("replicas") or 0):
            return False
    return True


def measure_ceiling(kube: Any, docs: list[dict[str, Any]], max_in_flight: int, timeout: float) -> dict[str, Any]:
    from adnomaly_operator.testing import wait_for

    namespace = "ceiling"
    kube.kubectl("create", "namespace", namespace)
    objects = ceiling_objects(docs, namespace)
    cpu, steal = control_plane_cpu_seconds(kube), steal_times()
    started = time.monotonic()
    apply_all(kube.kubeconfig, objects, max_in_flight)
    written = time.monotonic() - started
    wait_for(lambda: _workloads_ready(kube, namespace), timeout, "the ceiling's workloads to be ready", interval=1.0)
    return {"ceiling_seconds_to_write": round(written, 1),
            "ceiling_seconds_to_ready": round(time.monotonic() - started, 1),
            "ceiling_cpu_seconds_to_ready": round(control_plane_cpu_seconds(kube) - cpu, 1),
            "ceiling_cpu_steal_share": share(steal, steal_times())}


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


def _work(operator: Any) -> dict[str, int]:
    """What the operator did until now: its reconciles (wrote something or not) and its owned objects' watch
    events (queued their Pipeline, or only moved a resourceVersion and were let go)."""
    def count(name: str, **labels: str) -> int:
        return int(operator.total(name, **labels))

    return {
        "reconciles_changed_to_ready": count("adnomaly_operator_reconciles_total", result="changed"),
        "reconciles_noop_to_ready": count("adnomaly_operator_reconciles_total", result="noop"),
        "owned_events_queued_to_ready": count("adnomaly_operator_owned_events_total", queued="true"),
        "owned_events_skipped_to_ready": count("adnomaly_operator_owned_events_total", queued="false"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adnomaly_operator.desired import kube_plan
    from adnomaly_operator.render import Owner, RenderContext, render
    from adnomaly_operator.simulate import SimulatorThread
    from adnomaly_operator.testing import OperatorProcess, install_crds, wait_for

    from adnomaly.services.kube import KubeControlPlane
    from adnomaly.spec import parse_pipeline

    load = machine_load()
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
                    cpu_before = control_plane_cpu_seconds(kube) + operator.cpu_seconds()
                    steal = steal_times()
                    started = time.monotonic()
                    submit(kube.kubeconfig, docs)
                    wait_for(lambda: _deployments(kube) == deployments, args.timeout,
                             "every component Deployment to exist", interval=1.0)
                    seconds_to_deployments = time.monotonic() - started
                    wait_for(lambda: _phases(kube).get("Ready") == count, args.timeout,
                             f"{count} Pipelines to be Ready", interval=1.0)
                    seconds_to_ready = time.monotonic() - started
                    cpu_to_ready = control_plane_cpu_seconds(kube) + operator.cpu_seconds() - cpu_before
                    work_to_ready = _work(operator)
                    steal_to_ready = share(steal, steal_times())
                    writes_before = operator.quiet_writes()
                    noops_before = operator.total("adnomaly_operator_reconciles_total", result="noop")
                    time.sleep(args.noop_window)
                    writes = operator.writes() - writes_before
                    noops = operator.total("adnomaly_operator_reconciles_total", result="noop") - noops_before
                    rss, peak_rss = operator.rss_mb(), operator.peak_rss_mb()
                    cpu = operator.cpu_seconds()
                finally:
                    operator.stop()
                ceiling = ceiling_or_error(lambda: measure_ceiling(kube, docs, args.max_in_flight, args.timeout))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {
        "pipelines": count,
        "drift_interval": args.drift_interval,
        "objects_per_pipeline": len(desired),
        "seconds_to_deployments": round(seconds_to_deployments, 1),
        **ceiling_fields(round(seconds_to_ready, 1), ceiling, round(cpu_to_ready, 1)),
        "cpu_seconds_to_ready": round(cpu_to_ready, 1),
        "cpu_steal_share": steal_to_ready,
        **work_to_ready,
        "noop_reconciles": int(noops),
        "writes_per_noop_reconcile": round(writes / noops, 3) if noops else None,
        "operator_rss_mb": round(rss, 1),
        "operator_peak_rss_mb": round(peak_rss, 1),
        "operator_cpu_seconds": round(cpu, 1),
        **load,
        "load_average_1m_after": machine_load()["load_average_1m"],
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("operator", help="time N Pipelines to Ready on a local control plane")
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=2, help="fake (kwok) nodes")
    parser.add_argument("--workers", type=int, default=8, help="the operator's concurrent reconciles")
    parser.add_argument("--max-in-flight", type=int, default=96,
                        help="the ceiling's concurrent applies (the operator's client allows 96)")
    parser.add_argument("--drift-interval", type=float, default=DRIFT_INTERVAL,
                        help="the operator's drift check period (default: the operator's own, 60 s)")
    parser.add_argument("--noop-window", type=float, default=15.0, help="seconds of steady state to measure")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
