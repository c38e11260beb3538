"""What a workspace container used, read from the Docker engine before it is removed.

The peak memory of a container is what the fee schedule and capacity planning need, and
it is gone with the container. cgroup v1 reports it in the engine's stats
(`memory_stats.max_usage`); cgroup v2 keeps it in the container's `memory.peak` file
(Linux 5.19+), which the engine does not report, so it is read from the host's cgroup
tree for either cgroup driver. None: not measurable here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def peak_memory(
    stats: Mapping[str, Any], container_id: str, cgroup_root: Path = CGROUP_ROOT
) -> int | None:
    """The container's peak memory in bytes, from its stats or its cgroup v2 files."""
    memory = stats.get("memory_stats") or {}
    max_usage = memory.get("max_usage")
    if isinstance(max_usage, int) and max_usage > 0:
        return max_usage
    for folder in (
        cgroup_root / "system.slice" / f"docker-{container_id}.scope",  # systemd driver
        cgroup_root / "docker" / container_id,  # cgroupfs driver
    ):
        try:
            return int((folder / "memory.peak").read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
    return None
