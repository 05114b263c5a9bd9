"""What the e2e suites share: waiting for a cluster to get somewhere, reading its objects, saying why not.

The checks themselves live in the suites (test_pods.py: the project's images on any provider;
test_platform.py: with Strimzi, the Flink Kubernetes Operator and the Prometheus stack, where the provider
installs them); these helpers keep them from growing copies of the same loops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from tests.e2e.providers import E2ECluster

SYSTEM_NAMESPACE = "adnomaly-system"
RELEASE = "adnomaly"
OPERATOR_SELECTOR = f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={RELEASE}"
READY_TIMEOUT = 300.0
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 2.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except AssertionError as error:  # a check may say why it is not there yet
            result, last = None, error
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")


def get_json(cluster: E2ECluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def describe_pods(cluster: E2ECluster, namespace: str) -> str:
    """What a person would look at when a pod does not come up: phases, waiting reasons, recent events."""
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"{pods}\n{events[-4000:]}"


def split_ref(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


