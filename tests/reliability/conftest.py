"""The fault suite: every test here is marked `reliability` (select with `-m reliability`, skip with
`-m "not reliability"`). Its size comes from the environment, so CI runs a bounded default and a longer
run is one variable away:

    ADNOMALY_RELIABILITY_MINUTES  minutes of load (default 2.5)
    ADNOMALY_RELIABILITY_SEED     chaos and generator seed (default 1)
    ADNOMALY_RELIABILITY_FAULTS   faults to inject (default 9: every target once)
    ADNOMALY_RELIABILITY_RATE     events per second (default 2000)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


def env_number(name: str, default: float) -> float:
    text = os.environ.get(name)
    return default if not text else float(text)
