"""A data-plane component (`python -m adnomaly.<module> --config PATH`) run as a real child process for
integration tests: its config file rendered from a ComponentConfig plus its own section, secrets in env."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from adnomaly.plan import COMPONENT_MODULES
from adnomaly.services.base import ManagedProcess
from adnomaly.sinks.config import render_config


class ComponentProcess:
    def __init__(
        self, workdir: Path, name: str, config: Any, section_name: str, section: Any, env: dict[str, str]
    ) -> None:
        """`name` is the component's (e.g. `lake-sink`); its config file is `<name>.json` and its log
        `<name>.log` in `workdir`."""
        module = COMPONENT_MODULES[name]
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{name}.json"
        path.write_text(render_config(config, section_name, section))
        self.process = ManagedProcess(
            name=name,
            argv=[sys.executable, "-m", module, "--config", str(path)],
            log_path=workdir / f"{name}.log",
            env={**os.environ, **env},
        )

    def start(self) -> ComponentProcess:
        self.process.start()
        return self

    @property
    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.running

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (the component drains and exits); returns its exit code."""
        proc = self.process.process
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=timeout)
        self.process.process = None
        return code

