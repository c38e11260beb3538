"""The service spec of a swarm workspace: the Docker hardening, in swarm's own terms.

Invariant: every workspace service runs as 1000:100 with no capabilities (bounding
set empty), a read-only root with a tmpfs /tmp, the plan's CPU, memory and process
limits, DNS pointed at the gateway (where the firewall refuses it), no restarts, no
published ports and no virtual IP (`dnsrr`), on its project's node-local placement.

One control of `tre.hub.spawner.hardening` has no field in the service API this is
written against (Engine API 1.41, docker-py 7): `no-new-privileges`. The how-to
"Scale to Docker Swarm" says what stands in for it and how to close the gap.
"""

from __future__ import annotations

from typing import Any

from docker.types import DNSConfig, Mount, Resources, RestartPolicy

from tre.hub.plan import WORK_DIR
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.settings import Settings

from .networks import SwarmNetworks

TMP_BYTES = 1 << 30
"""The size of the tmpfs at /tmp, as for Docker workspaces (`size=1g`)."""

TMP_MODE = 0o1777


def tmp_mount() -> Mount:
    """A tmpfs at /tmp (Docker mounts it nosuid, nodev, noexec), as the Docker backend has."""
    return Mount("/tmp", None, type="tmpfs", tmpfs_size=TMP_BYTES, tmpfs_mode=TMP_MODE)  # noqa: S108


def container_spec(labels: dict[str, str], networks: SwarmNetworks) -> dict[str, Any]:
    """Keyword arguments for docker-py's `ContainerSpec` beyond image, env, args, mounts."""
    return {
        "user": f"{WORKSPACE_UID}:{WORKSPACE_GID}",
        "workdir": str(WORK_DIR),
        "labels": labels,
        "read_only": True,
        "cap_drop": ["ALL"],
        # Docker's embedded resolver answers for the overlay and forwards the rest to the
        # gateway, where the firewall refuses it: no outside name resolves.
        "dns_config": DNSConfig(
            nameservers=[str(networks.gateway)], options=["timeout:1", "attempts:1"]
        ),
    }


def resources(settings: Settings, cpu_limit: float, mem_limit: int) -> Resources:
    """CPU and memory limits of the plan, and the site's process limit."""
    spec = Resources(cpu_limit=int(cpu_limit * 1e9), mem_limit=mem_limit)
    # docker-py 7 has no keyword for it; the Engine API has had it since 1.41.
    spec["Limits"]["Pids"] = settings.hub.pids_limit
    return spec


def task_spec(settings: Settings, cpu_limit: float, mem_limit: int) -> dict[str, Any]:
    """Keyword arguments for docker-py's `TaskTemplate` that replace SwarmSpawner's own."""
    return {
        "resources": resources(settings, cpu_limit, mem_limit),
        # A workspace that exits stays stopped: the hub sees it and the person restarts it
        # (through the policy again), rather than the swarm bringing it back on its own.
        "restart_policy": RestartPolicy(condition="none"),
    }


def placement(networks: SwarmNetworks) -> dict[str, Any]:
    """On the hub's own node: the only node whose gateway bridge the hub can reach."""
    return {"constraints": [f"node.id=={networks.node_id}"]}


def endpoint_spec() -> dict[str, Any]:
    """No virtual IP and no routing mesh: the service publishes nothing."""
    return {"mode": "dnsrr"}
