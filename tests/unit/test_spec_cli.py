"""`adnomaly validate` and `adnomaly render`: the cluster's verdict and the operator's objects, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from adnomaly.cli import main
from adnomaly.spec import load_pipeline, parse_pipeline
from adnomaly_operator.admission import admission_errors
from adnomaly_operator.desired import kube_plan
from adnomaly_operator.reconcile import Reconciler
from adnomaly_operator.render import Images, Owner, RenderContext, render

from tests.operator.spec_cases import INVALID_SPECS, document

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "manifests" / "pipeline.yaml", *sorted((REPO / "manifests" / "examples").glob("*.yaml"))]


def write(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def pipeline_doc(spec: dict[str, Any], name: str = "demo", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name, **meta}, "spec": spec}


# -- validate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_pipeline_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(path)]) == 0
    assert "is valid" in capsys.readouterr().out


@pytest.mark.parametrize(("case", "spec", "api_field", "model_fragment"), INVALID_SPECS,
                         ids=[c[0] for c in INVALID_SPECS])
def test_validate_refuses_what_the_api_server_refuses(
    case: str, spec: dict[str, Any], api_field: str, model_fragment: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["validate", "-f", str(write(tmp_path, document(case, spec)))]) == 1
    out = capsys.readouterr().out
    paths = [line.strip().split(": ", 1)[0] for line in out.splitlines() if line.startswith("  ")]
    # The error names the API server's field or the object holding it (a cross-field rule of that object).
    assert any(api_field == p or api_field.startswith(p + ".") or api_field.startswith(p + "[") for p in paths), out
    assert model_fragment.split(".")[-1] in out


def test_validate_reports_every_error_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = pipeline_doc({
        "events": {"schema": "nope"},
        "kafka": {"topics": {"raw": {"partitions": 0, "retention": "7 days"}}},
        "features": [{"name": "f", "dimensions": ["geo"], "window": {"type": "hopping", "size": "5m"},
                      "metrics": [{"name": "n", "agg": "count"}]}],
        "bogus": 1,
    }, name="Bad_Name")  # fmt: skip
    assert main(["validate", "-f", str(write(tmp_path, bad))]) == 1
    out = capsys.readouterr().out
    for path in ("metadata.name", "spec.events.schema", "spec.kafka.topics.raw.partitions",
                 "spec.kafka.topics.raw.retention", "spec.features[0].window", "spec.bogus"):  # fmt: skip
        assert f"  {path}: " in out, (path, out)
    assert out.count("  spec.kafka.topics.raw.partitions: ") == 1  # the model and the schema agree: said once
    assert out.count("  spec.bogus: ") == 1


def test_validate_types_as_strictly_as_the_api_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lax = pipeline_doc({"source": {"generator": {"enabled": "yes"}},
                        "kafka": {"topics": {"raw": {"partitions": "6", "retention": "7d"}}}})
    parse_pipeline(lax)  # pydantic's lax mode takes both strings; the API server takes neither
    assert main(["validate", "-f", str(write(tmp_path, lax))]) == 1
    out = capsys.readouterr().out
    assert '  spec.source.generator.enabled: Invalid value: "yes": must be of type boolean' in out
    assert '  spec.kafka.topics.raw.partitions: Invalid value: "6": must be of type integer' in out


def test_validate_needs_a_spec_like_the_crd() -> None:
    assert [e.path for e in admission_errors({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline",
                                              "metadata": {"name": "x"}})] == ["spec"]


def test_validate_checks_every_pipeline_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = pipeline_doc({}, name="good"), pipeline_doc({"deletionPolicy": "Sometimes"}, name="bad")
    path = write(tmp_path, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, good, bad)
    assert main(["validate", "-f", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Pipeline good is valid" in out and "Pipeline bad: 1 error(s)" in out and "spec.deletionPolicy" in out


def test_validate_without_a_pipeline_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("kind: ConfigMap\n")
    assert main(["validate", "-f", str(path)]) == 1
    assert "no `kind: Pipeline` document" in capsys.readouterr().out


# -- render --------------------------------------------------------------------------------------------


def operator_objects(path: Path, namespace: str, uid: str) -> list[dict[str, Any]]:
    """What the operator's reconciler renders for this file, created in `namespace` with `uid`."""
    body = yaml.safe_load(path.read_text())
    body["metadata"] = {**body["metadata"], "namespace": namespace, "uid": uid, "generation": 1}
    reconciler = Reconciler(client=None, live_of=lambda key: {}, images=Images.from_env())  # type: ignore[arg-type]
    return [d.obj for d in reconciler._render((namespace, body["metadata"]["name"]), body).desired]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_render_prints_what_the_operator_applies(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uid = "6f1c1d2e-0000-4000-8000-000000000001"
    assert main(["render", "-f", str(path), "--namespace", "team-a", "--uid", uid]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
    assert printed == operator_objects(path, "team-a", uid)


def test_render_defaults_to_the_pipeline_namespace_and_a_placeholder_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = write(tmp_path, pipeline_doc({}, namespace="ads"))
    assert main(["render", "-f", str(path)]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
    p = load_pipeline(path)
    expected = render(kube_plan(p, "ads"), RenderContext(
        Owner("adnomaly.io/v1alpha1", "Pipeline", "demo", "00000000-0000-0000-0000-000000000000"), Images.from_env(),
    ))  # fmt: skip
    assert printed == [d.obj for d in expected]
    assert {d["metadata"]["namespace"] for d in printed} == {"ads"}


def test_render_marks_generated_secrets_and_never_prints_secret_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES[0])]) == 0
    out = capsys.readouterr().out
    assert "# generated once by the operator with random contents (tokens)" in out
    secrets = [d for d in yaml.safe_load_all(out) if d is not None and d["kind"] == "Secret"]
    assert secrets and all("data" not in s and "stringData" not in s for s in secrets)
    assert "&id" not in out  # plain YAML, no anchors


def test_render_refuses_an_invalid_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pipeline_doc({"kafka": {"topics": {"raw": {"partitions": 0, "retention": "7d"}}}}))
    assert main(["render", "-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "spec.kafka.topics.raw.partitions" in captured.err


@pytest.mark.parametrize("keda", [True, False])
def test_render_follows_the_operator_with_and_without_keda(
    keda: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from adnomaly_operator.actions import Capabilities

    path = write(tmp_path, pipeline_doc({"components": {"processor": {"autoscaling": {"maxReplicas": 3}}}}))
    uid = "6f1c1d2e-0000-4000-8000-000000000002"
    assert main(["render", "-f", str(path), "-n", "team-a", "--uid", uid, *([] if keda else ["--no-keda"])]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
    body = yaml.safe_load(path.read_text())
    body["metadata"] = {**body["metadata"], "namespace": "team-a", "uid": uid, "generation": 1}
    reconciler = Reconciler(client=None, live_of=lambda key: {}, images=Images.from_env(),  # type: ignore[arg-type]
                            capabilities=Capabilities(keda=keda))
    assert printed == [d.obj for d in reconciler._render(("team-a", "demo"), body).desired]
    (processor,) = [d for d in printed if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("processor")]
    assert ("replicas" in processor["spec"]) != keda  # with KEDA, KEDA owns the autoscaled consumer's replicas
