"""The pod hardening every pod must have, checked on a pod spec (shared by the render and chart tests)."""

from __future__ import annotations

from typing import Any


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container's security setting: its own, else the pod's (as the kubelet resolves it)."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod.get("securityContext") or {}).get(key)


def hardening_problems(pod: dict[str, Any], where: str, *, resources: bool = True) -> list[str]:
    """Every way the pod spec `pod` falls short; empty when it is hardened."""
    problems = []
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    if not containers:
        problems.append(f"{where}: no containers")
    for c in containers:
        at = f"{where}/{c.get('name')}"
        sc = c.get("securityContext") or {}
        if effective(pod, c, "runAsNonRoot") is not True:
            problems.append(f"{at}: runAsNonRoot is not true")
        if effective(pod, c, "runAsUser") == 0:
            problems.append(f"{at}: runs as uid 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: privilege escalation allowed")
        if sc.get("privileged"):
            problems.append(f"{at}: privileged")
        caps = sc.get("capabilities") or {}
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            problems.append(f"{at}: capabilities not all dropped: {caps}")
        if (effective(pod, c, "seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{at}: seccomp profile is not RuntimeDefault")
        if resources:
            res = c.get("resources") or {}
            requests, limits = res.get("requests") or {}, res.get("limits") or {}
            if not {"cpu", "memory"} <= requests.keys():
                problems.append(f"{at}: cpu/memory requests missing: {res}")
            if "memory" not in limits:
                problems.append(f"{at}: no memory limit: {res}")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{where}: {flag}")
    return problems
