"""What runs the compiled SQL: the job script's config handling, checkpoint discovery, local job options."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest
from adnomaly.features.sql import JobOptions, compile_pipeline
from adnomaly.services.flink import JOB_SCRIPT, FeaturesJob, FlinkInstall, latest_checkpoint
from adnomaly.spec import parse_pipeline


def load_job_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adnomaly_flink_job", JOB_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports pyflink only when it runs a job
    return module


def compiled() -> bytes:
    pipeline = parse_pipeline({
        "metadata": {"name": "shop"},
        "spec": {"features": [
            {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]},
        ]},
    })  # fmt: skip
    return compile_pipeline(pipeline, "k:9092", JobOptions(checkpoint_dir="file:///c")).to_json()


def test_job_script_reads_a_compiled_job(tmp_path: Path) -> None:
    script = load_job_script()
    path = tmp_path / "job.json"
    path.write_bytes(compiled())
    job = script.load_job(str(path))
    assert job["job_name"] == "adnomaly-shop-features"
    assert len(job["inserts"]) == 1 and job["configuration"]["execution.checkpointing.mode"] == "EXACTLY_ONCE"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "cannot read the job config"),
        (
            b'{"format": 2, "configuration": {}, "statements": [], "inserts": ["x"]}',
            "not a features job config",
        ),
        (b'{"format": 1, "configuration": {}, "statements": []}', "missing `inserts`"),
        (b'{"format": 1, "configuration": {}, "statements": [], "inserts": []}', "nothing to run"),
    ],
)
def test_job_script_rejects_bad_configs_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    script = load_job_script()
    path = tmp_path / "job.json"
    path.write_bytes(content)
    with pytest.raises(SystemExit, match=message):
        script.load_job(str(path))
    with pytest.raises(SystemExit, match="cannot read the job config"):
        script.load_job(str(tmp_path / "missing.json"))


def test_job_script_overrides() -> None:
    script = load_job_script()
    assert script.parse_overrides(["a.b=1", "pipeline.jars=file:///x.jar;file:///y.jar", "c="]) == {
        "a.b": "1",
        "pipeline.jars": "file:///x.jar;file:///y.jar",
        "c": "",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        script.parse_overrides(["novalue"])


def checkpoint(root: Path, job: str, name: str, mtime: int, complete: bool = True) -> Path:
    path = root / job / name if job else root / name
    path.mkdir(parents=True)
    if complete:
        (path / "_metadata").write_bytes(b"x")
        os.utime(path / "_metadata", (mtime, mtime))
    return path


def test_latest_checkpoint_is_the_newest_complete_one_across_job_runs(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path) is None
    checkpoint(tmp_path, "job-a", "chk-7", 1000)
    newest = checkpoint(tmp_path, "job-b", "chk-2", 2000)  # a later run (restored) has a new job id
    checkpoint(tmp_path, "job-b", "chk-3", 3000, complete=False)  # in progress: no _metadata yet
    (tmp_path / "job-b" / "shared").mkdir()
    assert latest_checkpoint(tmp_path) == newest
    savepoint = checkpoint(tmp_path, "", "savepoint-abc-123", 4000)
    assert latest_checkpoint(tmp_path) == savepoint


def test_local_job_configuration_points_at_its_state_dir_and_restores(tmp_path: Path) -> None:
    from adnomaly.features.sql import decode_job

    job = FeaturesJob(decode_job(compiled()), tmp_path, rest_port=18081)
    install = FlinkInstall(tmp_path / "home", tmp_path / "python", (tmp_path / "a.jar", tmp_path / "b.jar"))
    conf = job._configuration(install, None)
    # checkpoints per plan: checkpoints/<plan digest>/
    assert conf["execution.checkpointing.dir"] == job.checkpoint_dir.as_uri()
    assert job.checkpoint_dir.parent == tmp_path / "checkpoints" and len(job.checkpoint_dir.name) == 16
    assert conf["pipeline.jars"] == f"{(tmp_path / 'a.jar').as_uri()};{(tmp_path / 'b.jar').as_uri()}"
    assert conf["rest.port"] == "18081" and conf["rest.bind-address"] == "127.0.0.1"
    assert "execution.state-recovery.path" not in conf
    chk = tmp_path / "checkpoints" / "j" / "chk-1"
    assert job._configuration(install, chk)["execution.state-recovery.path"] == chk.as_uri()
    assert json.loads(compiled())["configuration"]["execution.checkpointing.dir"] == "file:///c"


def test_pinned_versions_agree_everywhere() -> None:
    from adnomaly.services.flink import FLINK_DIR, FLINK_VERSION, KAFKA_CONNECTOR_VERSION

    lock = (FLINK_DIR / "requirements.lock").read_text().splitlines()
    assert f"apache-flink=={FLINK_VERSION}" in lock and f"apache-flink-libraries=={FLINK_VERSION}" in lock
    pom = (FLINK_DIR / "pom.xml").read_text()
    assert f"<flink.version>{FLINK_VERSION}</flink.version>" in pom
    assert f"<kafka.connector.version>{KAFKA_CONNECTOR_VERSION}</kafka.connector.version>" in pom
    major_minor = ".".join(FLINK_VERSION.split(".")[:2])
    assert KAFKA_CONNECTOR_VERSION.endswith(f"-{major_minor}")  # the connector build for this Flink
    dockerfile = (FLINK_DIR / "Dockerfile").read_text()
    assert f"ARG FLINK_IMAGE=flink:{FLINK_VERSION}-" in dockerfile
    assert "\nUSER flink\n" in dockerfile  # the job image runs as non-root
