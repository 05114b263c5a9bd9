"""Feast in its own environment: `ensure_feast()` and running Feast's Python there.

Feast 0.67 (`feast[redis,postgres]`) pins redis<8 and brings its own pyarrow, numpy and SQLAlchemy: its pins
clash with the main package's (redis 8), so, like the PyFlink job, it gets its own venv, built once from
`tools/feast/requirements.lock` under `CACHE_DIR/feast/<version>/` and reused (a marker holding the lock
file's fingerprint, written last, makes the cached case a file read). The main package never imports feast:
it writes Feast's layout and repository with pure code (`adnomaly.feast`), and whoever wants Feast's own
answers (`adnomaly feast --apply`, `adnomaly bench online --via feast`, the tests) runs that venv's Python.
Cold: ~150 MB of wheels from PyPI (the venv is ~600 MB).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import time
from pathlib import Path

from adnomaly.services.base import CACHE_DIR, ServiceError, file_lock, run_tool
from adnomaly.services.flink import base_python

FEAST_VERSION = "0.67.0"
SUPPORTED_PYTHONS = ((3, 10), (3, 11), (3, 12))
LOCK_FILE = Path(__file__).resolve().parents[3] / "tools" / "feast" / "requirements.lock"

_log = logging.getLogger(__name__)


def feast_home(version: str = FEAST_VERSION) -> Path:
    return CACHE_DIR / "feast" / version


def feast_python(version: str = FEAST_VERSION) -> Path:
    return feast_home(version) / "venv" / "bin" / "python"


def _fingerprint() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def feast_installed(version: str = FEAST_VERSION) -> bool:
    """Whether `ensure_feast(version)` would find everything in the cache."""
    marker = feast_home(version) / ".installed"
    return marker.is_file() and marker.read_text().strip() == _fingerprint() and feast_python(version).is_file()


def ensure_feast(version: str = FEAST_VERSION) -> Path:
    """Install Feast's venv from tools/feast/requirements.lock (idempotent, serialised by a lock file);
    returns its Python."""
    if f"feast=={version}\n" not in LOCK_FILE.read_text():
        raise ServiceError(f"{LOCK_FILE} does not pin feast {version}")
    if feast_installed(version):
        return feast_python(version)
    home = feast_home(version)
    with file_lock(CACHE_DIR / "feast" / f".{version}.lock"):
        if feast_installed(version):
            return feast_python(version)
        started = time.monotonic()
        home.mkdir(parents=True, exist_ok=True)
        (home / ".installed").unlink(missing_ok=True)
        if not feast_python(version).is_file():
            shutil.rmtree(home / "venv", ignore_errors=True)
            interpreter = base_python(SUPPORTED_PYTHONS, f"Feast {version}")
            run_tool([str(interpreter), "-m", "venv", str(home / "venv")], "creating Feast's venv")
        run_tool(
            [str(feast_python(version)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", str(LOCK_FILE)],
            f"installing feast {version}", timeout=1800,
        )  # fmt: skip
        (home / ".installed").write_text(_fingerprint() + "\n")
        _log.info("Feast %s installed in %.1fs into %s", version, time.monotonic() - started, home)
    return feast_python(version)


def main() -> int:
    """`python -m adnomaly.services.feast`: install Feast's environment and print where its Python is."""
    try:
        print(ensure_feast())
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
