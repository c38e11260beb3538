"""SwarmSpawner for project workspaces: the same policy and checks as `ProjectSpawner`.

Every start asks the policy again, verifies the dataset folders and the host firewall
exactly as the Docker backend does (the code is `ProjectSpawner`'s own), then starts one
swarm service per workspace from the plan alone: permitted versions read-only, the
project workspace read-write, the hardening of `tre.swarm.service`, the project's
overlay and the node's confined gateway bridge. Any failure refuses the start.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import docker
import docker.errors
from docker.types import Mount
from dockerspawner import SwarmSpawner

from tre.hub.plan import SpawnPlan
from tre.hub.spawner import ProjectSpawner, WorkspaceNetwork, workspace_labels

from . import service
from .networks import GATEWAY_NETWORK, SwarmNetworks, swarm_networks


class ProjectSwarmSpawner(ProjectSpawner, SwarmSpawner):  # type: ignore[misc]
    """Starts the workspace of one project for one person as a swarm service."""

    _networks: SwarmNetworks | None = None

    def workspace_network(self, client: docker.DockerClient, project: str) -> WorkspaceNetwork:
        """The project's overlay and the node's gateway bridge (`SwarmError` if not so)."""
        return swarm_networks(client, project)

    def apply(self, plan: SpawnPlan, network: WorkspaceNetwork) -> None:
        """Configure this spawner's service from the plan, replacing what config set."""
        if not isinstance(network, SwarmNetworks):
            raise TypeError(f"a swarm workspace needs SwarmNetworks, not {network!r}")
        self.apply_workspace(plan, network)
        self._networks = network
        self.network_name = network.name
        labels = workspace_labels(plan)
        self.extra_container_spec = service.container_spec(labels, network)
        self.extra_task_spec = service.task_spec(
            self.tre_settings, float(self.cpu_limit), int(self.mem_limit)
        )
        self.extra_placement_spec = service.placement(network)
        self.extra_endpoint_spec = service.endpoint_spec()
        self.extra_create_kwargs = {"labels": labels}

    # SwarmSpawner's own `mounts` is a property too, over DockerSpawner's trait.
    @property
    def mounts(self) -> list[Mount]:  # type: ignore[override]
        """The binds of the plan (read-only unless the workspace folder) and a tmpfs /tmp."""
        binds: list[Mount] = SwarmSpawner.mounts.fget(self)
        return [*binds, service.tmp_mount()]

    async def task_container_id(self) -> str | None:
        """The container of the service's task, once the swarm has started one."""
        task = await self.get_task()
        status = (task or {}).get("Status") or {}
        container_id = (status.get("ContainerStatus") or {}).get("ContainerID")
        return str(container_id) if container_id else None

    async def workspace_container_id(self) -> str | None:
        return await self.task_container_id()

    async def get_ip_and_port(self) -> tuple[str, int]:
        """The task's address on the gateway bridge: the hub's only route to it."""
        container_id = await self.task_container_id()
        attrs: dict[str, Any] = await self.docker("inspect_network", GATEWAY_NETWORK)
        address = gateway_address(attrs, container_id) if container_id else None
        subnet = self._networks.gateway_bridge.subnet if self._networks else None
        if address is None or (subnet is not None and address not in subnet):
            raise RuntimeError(
                f"service {self.service_name}: task container {container_id} has no address "
                f"on {GATEWAY_NETWORK} of this node ({address}); the hub reaches workspaces "
                "only through its own node's gateway bridge"
            )
        return str(address), int(self.port)


def gateway_address(attrs: dict[str, Any], container_id: str) -> ipaddress.IPv4Address | None:
    """A container's address on the gateway bridge, from `docker network inspect` (None:
    no leg there, e.g. because it runs on another node)."""
    endpoint = (attrs.get("Containers") or {}).get(container_id)
    if not endpoint or not endpoint.get("IPv4Address"):
        return None
    return ipaddress.IPv4Interface(endpoint["IPv4Address"]).ip
