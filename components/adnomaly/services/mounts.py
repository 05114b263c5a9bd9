"""Reading and undoing mounts under a directory: the real node's teardown and the image builder's
debootstrap clean-up both need to know what is still mounted below a path before they delete it
(an rmtree through a live bind mount deletes what it points at)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def mounts() -> list[str]:
    """Mount points, in mount order (from /proc/self/mountinfo, octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    return [point for point in mounts() if point == str(directory) or point.startswith(prefix)]


def unmount(points: Iterable[str]) -> None:
    """Unmount every point, deepest and newest first; a busy one is detached lazily."""
    for point in sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True):
        done = subprocess.run(["umount", point], capture_output=True, check=False)
        if done.returncode != 0 and point in mounts():
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
