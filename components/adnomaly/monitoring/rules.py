"""Where the alert rules live and how to read their expressions."""

from __future__ import annotations

from pathlib import Path

import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def alert_expressions(paths: list[Path] | None = None) -> dict[str, str]:
    """alert name → expression, over every rule file."""
    found: dict[str, str] = {}
    for path in paths if paths is not None else rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = rule["expr"]
    return found
