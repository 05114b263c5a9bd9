"""`adnomaly up` supervises its services: each of Kafka, PostgreSQL, Redis and MinIO killed like a crash (SIGKILL
to every process of it) is restarted on its data and port, the run carries on, and the drain and the summary
still happen with nothing acknowledged lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_up import adnomaly

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# service directory under <state>/services → the name `adnomaly up` gives it in its notes
SERVICES = {"postgres": "postgresql", "kafka": "kafka", "redis": "redis", "minio": "minio"}


def service_port(service_dir: Path) -> int:
    """The port a service keeps in its state directory (Kafka: ports.json; the others: port)."""
    ports = service_dir / "ports.json"
    return int(json.loads(ports.read_text())["port"]) if ports.exists() else int((service_dir / "port").read_text())


def service_pids(service_dir: Path) -> list[int]:
    """The processes of the service: the process group of whatever listens on its port (a process title may
    hide its command line, as Redis rewrites its own)."""
    listening = subprocess.run(["fuser", "-n", "tcp", str(service_port(service_dir))], capture_output=True,
                               text=True, check=False).stdout.split()  # fmt: skip
    groups = {os.getpgid(int(pid)) for pid in listening if pid.isdigit()}
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _group(int(entry.name)) in groups]  # fmt: skip


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


class Output:
    """The run's output, read as it comes (the notes say when a service is back)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        for line in process.stdout or []:
            self.lines.append(line)

    def text(self) -> str:
        return " ".join(" ".join(self.lines).split())  # the console wraps long lines

    def wait_for(self, fragment: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.text():
            assert time.monotonic() < deadline, f"no {fragment!r} in {timeout:.0f}s:\n{self.text()[-3000:]}"
            time.sleep(0.5)


def test_each_service_killed_is_restarted_and_the_run_carries_on(state_dir: Path, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    process = subprocess.Popen(
        adnomaly("up", "-f", "manifests/pipeline.yaml", "--summary-json", str(summary_path),
                 "--state-dir", str(state_dir)),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output = Output(process)
    stats = state_dir / "pipelines" / "clickstream" / "generator" / "stats.json"
    try:
        deadline = time.monotonic() + 240
        while not (stats.exists() and json.loads(stats.read_text() or "{}").get("produced", 0) > 500):
            assert process.poll() is None and time.monotonic() < deadline, output.text()[-3000:]
            time.sleep(1)
        for directory, name in SERVICES.items():
            pids = service_pids(state_dir / "services" / directory)
            assert pids, f"no process of {directory} found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            output.wait_for(f"{name} restarted on", 180)
            assert process.poll() is None, output.text()[-3000:]
            assert service_pids(state_dir / "services" / directory), f"{directory} is not running again"
            time.sleep(5)  # the components ride out what is left of the outage before the next one
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = output.text()
    assert process.returncode == 0, text[-3000:]
    for name in SERVICES.values():
        assert f"{name} is down" in text, text[-3000:]
    summary = json.loads(summary_path.read_text())
    # Nothing acknowledged by Kafka is lost through the outages: every produced event is stored or dead-lettered.
    assert summary["produced"] > 500 and summary["lag"] == 0, summary
    assert summary["stored"] + summary["dlq"] == summary["produced"] + summary["ingested"], summary
