"""The rendered chart against the real control plane: server dry-run, and its RBAC enforced by the API server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from adnomaly.services.helm import CHART, INSTALL_MANIFEST, INSTALL_NAMESPACE, run_helm, template
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.render.flink import FLINK_RULES
from adnomaly_operator.testing import install_crds

pytestmark = pytest.mark.operator


def dry_run(kube: KubeControlPlane, manifest: str) -> list[str]:
    out = kube.kubectl("apply", "--server-side", "--dry-run=server", "-o", "name", "-f", "-", stdin=manifest).stdout
    return out.split()


def test_install_manifest_applies_cleanly(kube: KubeControlPlane) -> None:
    kube.kubectl("create", "namespace", INSTALL_NAMESPACE, check=False)  # the dry run does not create it
    names = dry_run(kube, INSTALL_MANIFEST.read_text())
    expected = [f"{d['kind']}/{d['metadata']['name']}"
                for d in yaml.safe_load_all(INSTALL_MANIFEST.read_text()) if d]
    assert [n.split("/", 1)[0].split(".")[0].lower() for n in names] == [e.split("/")[0].lower() for e in expected]
    assert any(n.startswith("customresourcedefinition") and n.endswith("/pipelines.adnomaly.io") for n in names)


@pytest.mark.parametrize("sets", [("operator.peering.enabled=true", "operator.replicas=2"), ()])
def test_chart_variants_accepted_by_the_api_server(kube: KubeControlPlane, helm: Path, namespace: str,
                                                  sets: tuple[str, ...]) -> None:
    manifest = template(helm, *(f"--set={s}" for s in sets), "--include-crds", namespace=namespace)
    assert dry_run(kube, manifest)


@pytest.fixture
def installed(kube: KubeControlPlane, helm: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart applied for real (CRD, namespaced RBAC for `namespace` only); yields (namespace, sa)."""
    install_crds(kube)  # Strimzi and Flink CRDs, so that `auth can-i` knows their resources
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    manifest = template(helm, f"--set=operator.watchNamespaces={{{namespace}}}", "--set=operator.replicas=0",
                        "--include-crds", release=release, namespace=namespace)
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    yield namespace, f"{release}-adnomaly"
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "clusterrole,clusterrolebinding",
                 f"{release}-adnomaly-cluster", check=False)


def can_i(kube: KubeControlPlane, sa: str, *args: str) -> bool:
    done = kube.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
    return done.stdout.strip() == "yes"


def test_rbac_is_enforced_by_the_api_server(kube: KubeControlPlane, installed: tuple[str, str]) -> None:
    namespace, name = installed
    sa = f"system:serviceaccount:{namespace}:{name}"
    for verb, resource in [("patch", "kafkatopics.kafka.strimzi.io"), ("create", "secrets"), ("delete", "jobs.batch"),
                           ("watch", "deployments.apps"), ("patch", "pipelines.adnomaly.io/status"),
                           ("create", "events.events.k8s.io"), ("patch", "flinkdeployments.flink.apache.org")]:
        assert can_i(kube, sa, verb, resource, "-n", namespace), f"{verb} {resource}"
    assert can_i(kube, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(kube, sa, "create", "secrets", "-n", "default"), "namespaced install reaches another namespace"
    assert not can_i(kube, sa, "get", "nodes")
    assert not can_i(kube, sa, "create", "pods", "-n", "default")
    assert not can_i(kube, sa, "create", "pods", "--subresource=exec", "-n", namespace)
    assert not can_i(kube, sa, "update", "secrets", "-n", namespace)
    assert not can_i(kube, sa, "escalate", "roles.rbac.authorization.k8s.io", "-n", namespace)
    assert not can_i(kube, sa, "bind", "roles.rbac.authorization.k8s.io", "-n", namespace)
    # the Flink job's Role as the operator renders it: accepted, because the operator holds each of its rules
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "flink-probe", "namespace": namespace}, "rules": FLINK_RULES}
    kube.kubectl("create", "-f", "-", f"--as={sa}", "--dry-run=server", stdin=json.dumps(role))
    # a wider one is refused: no escalation through the Roles it writes
    wider = kube.kubectl("create", "role", "flink-wider", "--verb=*", "--resource=pods,configmaps,services",
                         "-n", namespace, f"--as={sa}", "--dry-run=server", check=False)
    assert wider.returncode != 0 and "not currently held" in wider.stderr, wider.stderr
    kube.kubectl("create", "role", "flink-probe", "--verb=get", "--resource=pods", "-n", namespace)
    kube.kubectl("create", "rolebinding", "flink-probe", "--role=flink-probe", f"--serviceaccount={namespace}:default",
                 "-n", namespace, f"--as={sa}", "--dry-run=server")


def test_install_notes_tell_how_to_apply_a_pipeline_and_reach_grafana(kube: KubeControlPlane, helm: Path,
                                                                      namespace: str) -> None:
    out = run_helm(helm, "install", "notes", str(CHART), "--dry-run=client", "--namespace", namespace,
                   f"--kubeconfig={kube.kubeconfig}", "--set=operator.watchNamespaces={team-a}")
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl apply -f manifests/pipeline.yaml" in notes
    assert "port-forward" in notes and "3000:80" in notes
    assert "reconciles Pipelines in: team-a." in notes
    assert "deployment/notes-adnomaly" in notes
