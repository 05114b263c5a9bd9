"""The state directory of a local pipeline (`.adnomaly/` by default, kept between runs)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateDir:
    root: Path

    def service_dir(self, service: str) -> Path:
        return self.root / "services" / service

    def component_dir(self, pipeline: str, component: str) -> Path:
        path = self.root / "pipelines" / pipeline / component
        path.mkdir(parents=True, exist_ok=True)
        return path

    def secret(self, pipeline: str, name: str) -> str:
        """A secret generated once per pipeline and kept in a 0600 file; never printed."""
        directory = self.root / "pipelines" / pipeline / "secrets"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def secret_path(self, pipeline: str, name: str) -> Path:
        self.secret(pipeline, name)
        return self.root / "pipelines" / pipeline / "secrets" / name


def open_state_dir(path: str | Path) -> StateDir:
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Services may run as another user (PostgreSQL refuses root), so the tree must be traversable.
    root.chmod(0o755)
    return StateDir(root)
