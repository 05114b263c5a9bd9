"""Install (or check) everything the local services need: `python -m adnomaly.services.install`.

Idempotent and fast when everything is in place: Kafka's jars are cached under CACHE_DIR, PostgreSQL,
Redis, Prometheus, Alertmanager and Chromium come from Debian packages (Feast and PyFlink get venvs of their own,
cached under CACHE_DIR) (installed with apt only when
missing, and only when running as root). Chromium is for the console's browser test: Playwright drives the
system browser and never downloads one of its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from adnomaly.services.base import ServiceError, apt_install, find_executable, running_as_root
from adnomaly.services.feast import FEAST_VERSION, ensure_feast, feast_installed
from adnomaly.services.flink import FLINK_VERSION, ensure_flink, flink_installed
from adnomaly.services.helm import ensure_helm, helm_installed
from adnomaly.services.kafka import KAFKA_VERSION, ensure_kafka, kafka_installed
from adnomaly.services.minio import ensure_minio, minio_installed
from adnomaly.services.postgres import ensure_postgres, find_postgres_bin
from adnomaly.services.prometheus import (
    ALERTMANAGER,
    ensure_alertmanager,
    ensure_prometheus,
    find_alertmanager,
    find_prometheus,
)
from adnomaly.services.redis import ensure_redis
from adnomaly.services.vegeta import ensure_vegeta, vegeta_installed


def _step(name: str, present: Callable[[], bool], action: Callable[[], Path]) -> Path:
    if present():
        location = action()
        print(f"{name}: already installed ({location})", flush=True)
        return location
    started = time.monotonic()
    print(f"{name}: installing ...", flush=True)
    location = action()
    print(f"{name}: installed in {time.monotonic() - started:.1f}s ({location})", flush=True)
    return location


def ensure_chromium() -> Path:
    """Debian's headless-capable Chromium (`chromium`), installed with apt when missing."""
    found = find_executable("chromium")
    if found is not None:
        return found
    if not running_as_root():
        raise ServiceError("chromium not found: install the Debian package (sudo apt-get install -y chromium)")
    apt_install("chromium")
    found = find_executable("chromium")
    if found is None:
        raise ServiceError("apt-get installed chromium but it is still not on PATH")
    return found


def ensure_all(
    *,
    kafka: bool = True,
    postgres: bool = True,
    redis: bool = True,
    minio: bool = True,
    prometheus: bool = True,
    alertmanager: bool = True,
    flink: bool = True,
    helm: bool = True,
    chromium: bool = True,
    feast: bool = True,
    vegeta: bool = True,
) -> dict[str, Path]:
    """Ensure the selected services are installed; return where each one is; print what happened."""
    done: dict[str, Path] = {}
    if kafka:
        done["kafka"] = _step(f"kafka {KAFKA_VERSION}", kafka_installed, ensure_kafka)
    if postgres:
        done["postgres"] = _step("postgresql", lambda: find_postgres_bin() is not None, ensure_postgres)
    if redis:
        done["redis"] = _step("redis-server", lambda: find_executable("redis-server") is not None, ensure_redis)
    if minio:
        done["minio"] = _step("minio (built from its Go module)", minio_installed, ensure_minio)
    if prometheus:
        done["prometheus"] = _step("prometheus", lambda: find_prometheus() is not None, ensure_prometheus)
    if alertmanager:
        done["alertmanager"] = _step(
            f"prometheus-alertmanager {ALERTMANAGER.version}", lambda: find_alertmanager() is not None,
            ensure_alertmanager,
        )
    if helm:
        done["helm"] = _step("helm (built from its Go module)", helm_installed, ensure_helm)
    if chromium:
        done["chromium"] = _step("chromium", lambda: find_executable("chromium") is not None, ensure_chromium)
    if flink:
        done["flink"] = _step(
            f"flink {FLINK_VERSION} (PyFlink venv + Kafka connector)", flink_installed, lambda: ensure_flink().home
        )
    if feast:
        done["feast"] = _step(f"feast {FEAST_VERSION} (its own venv)", feast_installed, ensure_feast)
    if vegeta:
        done["vegeta"] = _step("vegeta (built from its Go module)", vegeta_installed, ensure_vegeta)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.services.install", description=__doc__)
    names = ("kafka", "postgres", "redis", "minio", "prometheus", "alertmanager", "flink", "helm", "chromium", "feast",
             "vegeta")  # fmt: skip
    for name in names:
        parser.add_argument(f"--no-{name}", action="store_true", help=f"skip {name}")
    args = parser.parse_args(argv)
    try:
        ensure_all(**{name: not getattr(args, f"no_{name}") for name in names})
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
