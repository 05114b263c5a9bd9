"""Alert rules: valid for promtool, unit-tested with promtool, and built on series the code registers."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from adnomaly.monitoring.catalog import registered_metrics
from adnomaly.monitoring.promql import metric_names
from adnomaly.monitoring.rules import RULE_TESTS_DIR, alert_expressions, rule_files

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")

REQUIRED_ALERTS = {
    "AdnomalyConsumerLagGrowing", "AdnomalyDeadLetterRateHigh", "AdnomalyDatabaseWriteFailures",
    "AdnomalyNoEvents", "AdnomalyAnomalyStorm", "AdnomalyComponentDown", "AdnomalyOperatorReconcileErrors",
}  # fmt: skip


def test_every_required_alert_exists() -> None:
    assert set(alert_expressions()) >= REQUIRED_ALERTS


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", *map(str, rule_files())], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    assert PROMTOOL is not None
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests
    done = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, tests)], capture_output=True, text=True, cwd=RULE_TESTS_DIR
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_alert_has_a_promtool_test() -> None:
    tested = " ".join(path.read_text() for path in RULE_TESTS_DIR.glob("*.yml"))
    for alert in alert_expressions():
        assert f"alertname: {alert}" in tested, alert


def test_alert_expressions_use_registered_series() -> None:
    known = {"up"}.union(*registered_metrics().values())
    for alert, expr in alert_expressions().items():
        names = metric_names(expr)
        assert names and names <= known, f"{alert}: unknown series {sorted(names - known)}"
