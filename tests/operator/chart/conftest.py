"""Chart tests: a pinned helm (built from its Go module); the real control plane comes from
tests/operator/conftest.py (one per session, shared with the operator tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from adnomaly.services.helm import ensure_helm


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()
