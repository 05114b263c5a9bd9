"""Helpers for the operator tests: drive the cluster with kubectl, read Pipelines' status, wait for
conditions. Running the operator itself: `adnomaly_operator.testing.OperatorProcess`."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from adnomaly.services.kube import KubeControlPlane, KubectlError
from adnomaly_operator import testing
from adnomaly_operator.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
PIPELINE_CRD = REPO / "crds" / "pipelines.adnomaly.io.yaml"
# Upstream Strimzi and Flink Kubernetes Operator CRDs: test data kept outside the repository.
THIRD_PARTY_CRDS = REPO.parent / "shared" / "third_party" / "crds"


def install_crds(kube: KubeControlPlane) -> None:
    """Our CRD and the upstream ones; then wait until the garbage collector follows owner references
    from Pipelines (it discovers new resource types only periodically)."""
    try:
        testing.install_crds(kube, PIPELINE_CRD, THIRD_PARTY_CRDS)
    except KubectlError:  # `kubectl wait` on a CRD created a moment ago can fail before it has conditions
        time.sleep(2)
        testing.install_crds(kube, PIPELINE_CRD, THIRD_PARTY_CRDS)
    wait_for_garbage_collector(kube)


def wait_for_garbage_collector(kube: KubeControlPlane, timeout: float = 180.0) -> None:
    ns = f"gc-canary-{uuid.uuid4().hex[:6]}"  # a fresh one: an earlier canary namespace may still be terminating
    kube.kubectl("create", "namespace", ns, check=False)
    owner = json.loads(kube.kubectl("create", f"--namespace={ns}", "-o", "json", "-f", "-",
                                    stdin=json.dumps(pipeline_doc("canary"))).stdout)
    ref = {"apiVersion": owner["apiVersion"], "kind": "Pipeline", "name": "canary", "uid": owner["metadata"]["uid"]}
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "canary", "namespace": ns, "ownerReferences": [ref]}}
    kube.kubectl("create", "-f", "-", stdin=json.dumps(config))
    kube.kubectl("delete", "pipeline", "canary", f"--namespace={ns}")
    wait_for(lambda: get(kube, ns, "configmap", "canary") is None, timeout, "the garbage collector to know Pipelines",
             interval=2)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def get(kube: KubeControlPlane, ns: str, *what: str) -> Any:
    done = kube.kubectl("get", *what, f"--namespace={ns}", "-o", "json", check=False)
    if done.returncode != 0:
        if "NotFound" in done.stderr or "doesn't have a resource type" in done.stderr:
            return None
        raise KubectlError(list(what), done)
    return json.loads(done.stdout)


def items(kube: KubeControlPlane, ns: str, kinds: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = [kinds] + ([f"--selector={selector}"] if selector else [])
    found = get(kube, ns, *args)
    return [] if found is None else list(found.get("items", []))


def status(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    found = get(kube, ns, "pipeline", name)
    return {} if found is None else dict(found.get("status") or {})


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or () if c.get("type") == kind), {})


def wait_phase(kube: KubeControlPlane, ns: str, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(kube, ns, name)
        return st if st.get("phase") == phase else None

    try:
        return wait_for(check, timeout, f"pipeline {ns}/{name} phase {phase}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status(kube, ns, name), indent=1)}") from None


def apply(kube: KubeControlPlane, ns: str, manifest: str | dict[str, Any] | Path, *extra: str) -> str:
    """`kubectl apply -f` (client-side, as a user would)."""
    if isinstance(manifest, Path):
        return kube.kubectl("apply", f"--namespace={ns}", "-f", str(manifest), *extra).stdout
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return kube.kubectl("apply", f"--namespace={ns}", "-f", "-", *extra, stdin=text).stdout


def patch_status(kube: KubeControlPlane, ns: str, kind: str, name: str, value: dict[str, Any]) -> None:
    """What Strimzi / the Flink operator would do: write the status subresource."""
    kube.kubectl("patch", kind, name, f"--namespace={ns}", "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": value}))


def pipeline_doc(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec or {}}


def delete_pipelines(kube: KubeControlPlane, ns: str, timeout: float = 60) -> None:
    """Delete every Pipeline in `ns` while the operator still runs, so no finalizer is left behind."""
    done = kube.kubectl("delete", "pipelines", "--all", f"--namespace={ns}", f"--timeout={timeout:.0f}s",
                        check=False, timeout=timeout + 30)
    if done.returncode != 0:  # a stuck finalizer would keep the namespace forever: drop it
        for item in items(kube, ns, "pipelines"):
            kube.kubectl("patch", "pipeline", item["metadata"]["name"], f"--namespace={ns}", "--type=merge",
                         "-p", '{"metadata":{"finalizers":null}}', check=False)
