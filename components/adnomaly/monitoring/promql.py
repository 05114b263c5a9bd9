"""Just enough PromQL reading for the checks: which series names and label matchers a query uses."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A metric name followed by an optional {matchers}; names after `by (`/`without (` are label lists, and
# function names are followed by `(`, so neither matches as long as we require a metric-looking name.
_SELECTOR = re.compile(r"\b(adnomaly_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)

    @property
    def text(self) -> str:
        inner = ", ".join(f'{label}{op}"{value}"' for label, op, value in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


def selectors(expr: str) -> list[Selector]:
    """Vector selectors in `expr` (only `adnomaly_*` series and `up`), in order, without duplicates."""
    found: list[Selector] = []
    for match in _SELECTOR.finditer(expr):
        start = match.start()
        if _inside_string(expr, start) or _is_label_list(expr, start):
            continue
        matchers = tuple(_MATCHER.findall(match.group(2) or ""))
        selector = Selector(match.group(1), matchers)
        if selector not in found:
            found.append(selector)
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.metric for selector in selectors(expr)}


def _inside_string(expr: str, index: int) -> bool:
    return expr.count('"', 0, index) % 2 == 1


def _is_label_list(expr: str, index: int) -> bool:
    """True when `index` is inside `by (...)`/`without (...)`/`on (...)`/`ignoring (...)`/`group_left(...)`."""
    opening = expr.rfind("(", 0, index)
    if opening < 0 or expr.rfind(")", 0, index) > opening:
        return False
    head = expr[:opening].rstrip()
    return bool(re.search(r"\b(by|without|on|ignoring|group_left|group_right)$", head))
