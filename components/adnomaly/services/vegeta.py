"""vegeta, the open-loop HTTP load generator `adnomaly bench online --rate` drives (`adnomaly.bench.open_loop`
says why a Go client and not Python).

The binary is compiled from vegeta's Go module by `tools/vegeta/build.sh` (pinned, as every Go tool here)
and cached under `~/.cache/adnomaly/vegeta/<version>/bin/`; `ADNOMALY_VEGETA_BIN` names another binary.
"""

from __future__ import annotations

from pathlib import Path

from adnomaly.services.base import built, ensure_built

BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "vegeta" / "build.sh"
BIN_ENV = "ADNOMALY_VEGETA_BIN"


def vegeta_installed() -> bool:
    return built("vegeta", BUILD_SCRIPT, BIN_ENV)


def ensure_vegeta() -> Path:
    """The pinned `vegeta` binary, built on first use (seconds with a warm Go module cache)."""
    return ensure_built("vegeta", BUILD_SCRIPT, BIN_ENV)
