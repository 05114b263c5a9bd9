"""The Helm chart rendered by a real (pinned) helm: lint, RBAC, dashboards, rules, schema, install.yaml drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from adnomaly.services.base import ServiceError
from adnomaly.services.helm import CHART, INSTALL_MANIFEST, install_manifest, run_helm
from adnomaly_operator.main import build_parser
from adnomaly_operator.render.common import Images
from adnomaly_operator.render.flink import FLINK_RULES
from adnomaly_operator.resources import OWNED_KINDS, PIPELINE

from tests.operator.chart.render import by_kind, one, render
from tests.operator.pod_security import hardening_problems

ROOT = Path(__file__).resolve().parents[3]
WRITE_VERBS = {"create", "patch", "delete"}
READ_VERBS = {"get", "list", "watch"}
# The operator renders a Role for the Flink job and may only do so holding every rule of it (no escalate or
# bind): update/deletecollection on configmaps, pods and deployments/finalizers come from that Role.
EXTRA_VERBS = {("", "configmaps"): {"update", "deletecollection"}}
FLINK_ROLE_ONLY = {("", "pods"), ("apps", "deployments/finalizers")}


def owned_verbs(group: str, plural: str) -> set[str]:
    return READ_VERBS | WRITE_VERBS | EXTRA_VERBS.get((group, plural), set())


def rules_of(objects: list[dict], kind: str, name_suffix: str = "") -> list[dict]:
    return [r for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix) for r in o["rules"]]


def granted(rules: list[dict], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_lint(helm: Path) -> None:
    out = run_helm(helm, "lint", str(CHART))
    assert "0 chart(s) failed" in out, out


def test_default_render_is_a_cluster_wide_operator(helm: Path) -> None:
    objects = render(helm)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service", "ServiceAccount"]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == "ghcr.io/adnomaly/adnomaly-operator:0.1.0"
    assert not any(a.startswith(("--namespace", "--peering")) for a in container["args"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ADNOMALY_IMAGE_COMPONENT"] == "ghcr.io/adnomaly/adnomaly:0.1.0"
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "adnomaly-system"}]


def test_every_image_the_operator_renders_can_be_set_through_the_chart(helm: Path) -> None:
    # The operator reads ADNOMALY_IMAGE_<FIELD> for each field of Images; the chart must pass every one
    # (an air-gapped install mirrors them all), and its defaults are the operator's.
    container = one(render(helm), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("ADNOMALY_IMAGE_")}
    assert Images.from_env(env) == Images()
    assert set(env) == {f"ADNOMALY_IMAGE_{field.upper()}" for field in Images.__dataclass_fields__}
    mirrored = one(render(helm, "images.postgres=mirror.example/postgres:17", "images.minioClient=mirror.example/mc:1"),
                   "Deployment")["spec"]["template"]["spec"]["containers"][0]
    images = Images.from_env({e["name"]: e["value"] for e in mirrored["env"] if "value" in e})
    assert (images.postgres, images.minio_client) == ("mirror.example/postgres:17", "mirror.example/mc:1")


VARIANTS = [(), ("operator.watchNamespaces={team-a,team-b}",), ("operator.peering.enabled=true",)]


@pytest.mark.parametrize("sets", VARIANTS)
def test_the_operator_pod_is_hardened(helm: Path, sets: tuple[str, ...]) -> None:
    for deployment in by_kind(render(helm, *sets), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert not hardening_problems(pod, deployment["metadata"]["name"])


@pytest.mark.parametrize("sets", VARIANTS)
def test_rbac_has_no_wildcards(helm: Path, sets: tuple[str, ...]) -> None:
    for kind in ("ClusterRole", "Role"):
        for rule in rules_of(render(helm, *sets), kind):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{kind} grants * {field}: {rule}"


def test_cluster_wide_rbac_covers_exactly_what_the_operator_uses(helm: Path) -> None:
    rules = rules_of(render(helm), "ClusterRole")
    for kind in OWNED_KINDS:
        assert granted(rules, kind.group, kind.plural) == owned_verbs(kind.group, kind.plural), kind
    assert granted(rules, PIPELINE.group, "pipelines") == READ_VERBS | {"patch", "update"}
    assert granted(rules, PIPELINE.group, "pipelines/status") == {"get", "patch", "update"}
    assert granted(rules, PIPELINE.group, "pipelines/finalizers") == {"update"}
    assert granted(rules, "events.k8s.io", "events") == {"create"}
    assert granted(rules, "", "events") == {"create"}
    assert granted(rules, "", "namespaces") == READ_VERBS
    assert granted(rules, "apiextensions.k8s.io", "customresourcedefinitions") == READ_VERBS
    known = {(k.group, k.plural) for k in OWNED_KINDS} | {
        ("adnomaly.io", "pipelines"), ("adnomaly.io", "pipelines/status"), ("adnomaly.io", "pipelines/finalizers"),
        ("events.k8s.io", "events"), ("", "events"), ("", "namespaces"),
        ("apiextensions.k8s.io", "customresourcedefinitions"), *FLINK_ROLE_ONLY,
    }
    extra = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]} - known
    assert not extra, f"RBAC grants resources the operator does not use: {sorted(extra)}"


# Every rule the chart grants, exactly: (apiGroup, resource, verbs). Widening any of them fails this test.
READ, WRITE = ("get", "list", "watch"), ("create", "patch", "delete")
PIPELINE_RULES = [
    ("adnomaly.io", "pipelines", (*READ, "patch", "update")),
    ("adnomaly.io", "pipelines/status", ("get", "patch", "update")),
    ("adnomaly.io", "pipelines/finalizers", ("update",)),
    *[("", r, (*READ, *WRITE)) for r in ("serviceaccounts", "secrets", "services")],
    ("apps", "statefulsets", (*READ, *WRITE)),
    ("", "configmaps", (*READ, "create", "update", "patch", "delete", "deletecollection")),
    ("apps", "deployments", (*READ, *WRITE)),
    ("", "pods", (*READ, "create", "delete")),
    ("apps", "deployments/finalizers", ("update",)),
    ("batch", "jobs", (*READ, *WRITE)),
    ("policy", "poddisruptionbudgets", (*READ, *WRITE)),
    ("autoscaling", "horizontalpodautoscalers", (*READ, *WRITE)),
    ("networking.k8s.io", "networkpolicies", (*READ, *WRITE)),
    *[("rbac.authorization.k8s.io", r, (*READ, *WRITE)) for r in ("roles", "rolebindings")],
    *[("kafka.strimzi.io", r, (*READ, *WRITE)) for r in ("kafkas", "kafkanodepools", "kafkatopics", "kafkausers")],
    ("flink.apache.org", "flinkdeployments", (*READ, *WRITE)),
    ("monitoring.coreos.com", "servicemonitors", (*READ, *WRITE)),
    *[("keda.sh", r, (*READ, *WRITE)) for r in ("scaledobjects", "triggerauthentications")],
    ("events.k8s.io", "events", ("create",)),
    ("", "events", ("create",)),
]
CRD_READ = ("apiextensions.k8s.io", "customresourcedefinitions", READ)
NAMESPACES_READ = ("", "namespaces", READ)


def flat(rules: list[dict]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(g, r, tuple(rule["verbs"])) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]]


def test_rbac_rules_are_exactly_the_expected_list(helm: Path) -> None:
    cluster_wide = render(helm)
    assert flat(one(cluster_wide, "ClusterRole")["rules"]) == [CRD_READ, NAMESPACES_READ, *PIPELINE_RULES]
    assert not by_kind(cluster_wide, "Role")
    namespaced = render(helm, "operator.watchNamespaces={team-a,team-b}")
    assert flat(one(namespaced, "ClusterRole")["rules"]) == [CRD_READ, NAMESPACES_READ]  # kopf lists namespaces
    for role in by_kind(namespaced, "Role"):
        assert flat(role["rules"]) == PIPELINE_RULES, role["metadata"]["namespace"]
    peering = render(helm, "operator.peering.enabled=true")
    kopf = [("kopf.dev", "clusterkopfpeerings", (*READ, "patch")), ("kopf.dev", "kopfpeerings", (*READ, "patch"))]
    assert flat(one(peering, "ClusterRole")["rules"]) == [CRD_READ, NAMESPACES_READ, kopf[0], *PIPELINE_RULES, kopf[1]]


def test_the_operator_holds_every_rule_of_the_flink_role_it_renders(helm: Path) -> None:
    """Without escalate/bind the API server refuses a Role its creator does not fully hold."""
    held = {(g, r, v) for g, r, verbs in PIPELINE_RULES for v in verbs}
    for rule in FLINK_RULES:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert (g, r, v) in held, (g, r, v)


def test_namespaced_rbac_is_one_role_per_namespace(helm: Path) -> None:
    objects = render(helm, "operator.watchNamespaces={team-a,team-b}")
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")) == ["team-a", "team-b"]
    cluster = rules_of(objects, "ClusterRole")
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in cluster] == [
        (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
        ([""], ["namespaces"], ["get", "list", "watch"]),
    ], "a namespaced operator may only read CRDs and namespaces cluster-wide"
    for kind in OWNED_KINDS:
        assert granted(roles[0]["rules"], kind.group, kind.plural) == owned_verbs(kind.group, kind.plural)
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


@pytest.mark.parametrize("sets", VARIANTS)
def test_operator_args_are_accepted_by_the_operator(helm: Path, sets: tuple[str, ...]) -> None:
    container = one(render(helm, *sets), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.command is None and args.metrics_port == 8000 and args.liveness_port == 8080
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": args.metrics_port, "healthz": args.liveness_port}
    assert args.namespace == [a.split("=", 1)[1] for a in container["args"] if a.startswith("--namespace=")]


def test_peering_installs_kopf_crds_and_passes_the_flag(helm: Path) -> None:
    objects = render(helm, "operator.peering.enabled=true", "operator.replicas=2")
    crds = sorted(o["metadata"]["name"] for o in by_kind(objects, "CustomResourceDefinition"))
    assert crds == ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=adnomaly" in args
    assert granted(rules_of(objects, "ClusterRole"), "kopf.dev", "clusterkopfpeerings") == READ_VERBS | {"patch"}


def test_every_dashboard_is_a_labelled_configmap(helm: Path) -> None:
    maps = {}
    for cm in by_kind(render(helm), "ConfigMap"):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((filename, text),) = cm["data"].items()
        maps[filename] = text
    files = sorted((ROOT / "dashboards").glob("*.json"))
    assert files and sorted(maps) == [f.name for f in files]
    for f in files:
        assert json.loads(maps[f.name]) == json.loads(f.read_text())
    assert not by_kind(render(helm, "dashboards.enabled=false"), "ConfigMap")


def test_monitoring_objects_use_the_alert_rules_and_job_names(helm: Path) -> None:
    objects = render(helm, "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true")
    rule = one(objects, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy/prometheus/rules/adnomaly-alerts.yml").read_text())
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "adnomaly-operator"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.parametrize(("assignment", "complaint"), [
    ("operator.replicas=-1", "replicas"),
    ("operator.watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
    ("operator.imagee.tag=x", "imagee"),
    ("monitoring.serviceMonitor.interval=soon", "interval"),
])
def test_schema_rejects_bad_values(helm: Path, assignment: str, complaint: str) -> None:
    with pytest.raises(ServiceError, match=complaint):
        render(helm, assignment)


def test_chart_ships_the_generated_crd(helm: Path) -> None:
    crd = one(render(helm, crds=True), "CustomResourceDefinition")
    assert crd == yaml.safe_load((ROOT / "crds/pipelines.adnomaly.io.yaml").read_text())


def test_install_manifest_is_the_rendered_chart(helm: Path) -> None:
    assert INSTALL_MANIFEST.read_text() == install_manifest(helm), (
        "manifests/install.yaml drifted from charts/adnomaly: run `make manifests`"
    )


def test_stack_chart_declares_optional_dependencies_behind_conditions(helm: Path) -> None:
    stack = CHART.parent / "adnomaly-stack"
    out = run_helm(helm, "lint", str(stack))
    assert "0 chart(s) failed" in out, out
    dependencies = {d["name"]: d for d in yaml.safe_load((stack / "Chart.yaml").read_text())["dependencies"]}
    assert dependencies.pop("adnomaly")["repository"] == "file://../adnomaly"
    values = yaml.safe_load((stack / "values.yaml").read_text())
    for dependency in dependencies.values():
        flag = dependency["condition"]
        assert flag == f"{dependency['alias']}.enabled" and values[dependency["alias"]]["enabled"] is False
