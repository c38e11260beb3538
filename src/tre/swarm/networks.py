"""The networks a swarm workspace uses: its project's overlay and the node's gateway bridge.

Invariant: a workspace service is attached to exactly one network, the attachable,
swarm-scoped overlay `tre-overlay-<project>` labelled with its project, and reaches the
host only through Docker's `docker_gwbridge`, which must be a bridge named `tregwbridge`
(so the host firewall's `tre+` rules confine it like a project bridge), without
inter-container traffic, masquerading or IPv6. A same-named network that differs in
any of this is refused, never adopted or repaired.

The overlay is deliberately *not* `--internal`: Docker gives a task a leg on
`docker_gwbridge` only when one of its networks is not internal, and that leg is the
only way the hub on the host reaches the workspace. Confinement is the host firewall's
job on that bridge (fail closed: the spawner checks the rules before every start).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from tre.hub.networks import (
    BRIDGE_NAME_OPTION,
    PROJECT_LABEL,
    HostLeg,
    ProjectNetworkError,
    check_project_id,
    create_or_check,
    ipv4_problems,
    ipv4_subnet,
    lookup_network,
)

OVERLAY_PREFIX = "tre-overlay-"
"""Overlay network names are this prefix plus the project id."""

GATEWAY_NETWORK = "docker_gwbridge"
"""The name Docker gives the bridge that connects swarm tasks to their node."""

GATEWAY_BRIDGE = "tregwbridge"
"""The Linux bridge `docker_gwbridge` must have: `tre+` puts it under the host firewall."""

GATEWAY_LABEL = "org.jupyter-tre.swarm-gateway"

ICC_OPTION = "com.docker.network.bridge.enable_icc"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"


class SwarmError(ProjectNetworkError):
    """The engine is not a swarm this TRE can start workspaces on, as it stands."""


@dataclass(frozen=True)
class OverlayNetwork:
    """A project's overlay as the swarm reports it."""

    project_id: str
    name: str
    id: str


@dataclass(frozen=True)
class GatewayBridge(HostLeg):
    """The node's `docker_gwbridge`: where a task's host-facing leg sits."""

    id: str


@dataclass(frozen=True)
class SwarmNetworks:
    """What a workspace service is attached to, and the node it must run on."""

    overlay: OverlayNetwork
    gateway_bridge: GatewayBridge
    node_id: str

    @property
    def name(self) -> str:
        return self.overlay.name

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.gateway_bridge.gateway

    def hub_url(self, port: int, scheme: str = "http") -> str:
        return self.gateway_bridge.hub_url(port, scheme)


def overlay_name(project_id: str) -> str:
    """The overlay network of a project: `tre-overlay-<id>`."""
    check_project_id(project_id)
    return OVERLAY_PREFIX + project_id


def swarm_node(client: docker.DockerClient) -> str:
    """This engine's node id; `SwarmError` unless it is an active swarm manager."""
    swarm = client.info().get("Swarm") or {}
    if not _is_manager(swarm):
        raise SwarmError(
            "the Docker engine is not a manager of an active swarm "
            f"(state {swarm.get('LocalNodeState')!r}); see the how-to 'Scale to Docker Swarm'"
        )
    return str(swarm["NodeID"])


# -- the gateway bridge ------------------------------------------------------------------------


def gateway_problems(attrs: dict[str, Any]) -> list[str]:
    """Why `docker network inspect docker_gwbridge` is not the bridge this module needs."""
    problems = []
    if attrs.get("Driver") != "bridge":
        problems.append(f"driver is {attrs.get('Driver')!r}, not 'bridge'")
    options = attrs.get("Options") or {}
    if options.get(BRIDGE_NAME_OPTION) != GATEWAY_BRIDGE:
        problems.append(
            f"bridge is {options.get(BRIDGE_NAME_OPTION)!r}, not {GATEWAY_BRIDGE!r} "
            "(the host firewall would not match it)"
        )
    if options.get(ICC_OPTION) != "false":
        problems.append("inter-container traffic is enabled (projects could reach each other)")
    if options.get(MASQUERADE_OPTION) != "false":
        problems.append("IP masquerading is enabled (a forwarding mistake would reach out)")
    if attrs.get("EnableIPv6"):
        problems.append("IPv6 is enabled")
    return problems + ipv4_problems(attrs)


def _gateway_from(attrs: dict[str, Any]) -> GatewayBridge:
    problems = gateway_problems(attrs)
    if problems:
        raise SwarmError(
            f"Docker network {GATEWAY_NETWORK!r} is not the gateway bridge jupyter-tre needs: "
            + "; ".join(problems)
            + ". Leave the swarm, remove it and create it as the how-to 'Scale to Docker "
            "Swarm' shows, before `docker swarm init` or `join`."
        )
    subnet, gateway = ipv4_subnet(attrs)
    return GatewayBridge(id=str(attrs["Id"]), bridge=GATEWAY_BRIDGE, subnet=subnet, gateway=gateway)


def get_gateway_bridge(client: docker.DockerClient) -> GatewayBridge:
    """The node's gateway bridge, checked (see the module invariant); `SwarmError` if absent."""
    attrs = lookup_network(client, GATEWAY_NETWORK)
    if attrs is None:
        raise SwarmError(
            f"there is no Docker network {GATEWAY_NETWORK!r}: create it as the how-to "
            "'Scale to Docker Swarm' shows"
        )
    return _gateway_from(attrs)


def create_gateway_bridge(client: docker.DockerClient) -> GatewayBridge:
    """Create `docker_gwbridge` as jupyter-tre needs it (before the engine joins a swarm,
    which would otherwise create Docker's default one). An existing one is checked and
    returned, never changed."""
    existing = lookup_network(client, GATEWAY_NETWORK)
    if existing is not None:
        return _gateway_from(existing)
    try:
        client.networks.create(
            GATEWAY_NETWORK,
            driver="bridge",
            enable_ipv6=False,
            labels={GATEWAY_LABEL: "1"},
            options={
                BRIDGE_NAME_OPTION: GATEWAY_BRIDGE,
                ICC_OPTION: "false",
                MASQUERADE_OPTION: "false",
            },
        )
    except docker.errors.APIError as exc:
        raise SwarmError(f"cannot create Docker network {GATEWAY_NETWORK!r}: {exc}") from exc
    return get_gateway_bridge(client)


# -- the project overlays --------------------------------------------------------------------


def _overlay_problems(attrs: dict[str, Any], project_id: str) -> list[str]:
    problems = []
    if attrs.get("Driver") != "overlay":
        problems.append(f"driver is {attrs.get('Driver')!r}, not 'overlay'")
    if attrs.get("Scope") != "swarm":
        problems.append(f"scope is {attrs.get('Scope')!r}, not 'swarm'")
    if attrs.get("Attachable") is not True:
        problems.append("it is not attachable")
    if attrs.get("Ingress"):
        problems.append("it is the routing mesh's ingress network")
    if attrs.get("Internal"):
        problems.append("it is internal (its tasks would get no leg the hub can reach)")
    if attrs.get("EnableIPv6"):
        problems.append("IPv6 is enabled")
    found = (attrs.get("Labels") or {}).get(PROJECT_LABEL)
    if found != project_id:
        problems.append(
            f"label {PROJECT_LABEL} is {found!r}, not {project_id!r}"
            if found is not None
            else f"label {PROJECT_LABEL} is missing"
        )
    return problems


def _overlay_from(attrs: dict[str, Any], project_id: str) -> OverlayNetwork:
    problems = _overlay_problems(attrs, project_id)
    if problems:
        raise SwarmError(
            f"Docker network {attrs.get('Name')!r} exists but is not a jupyter-tre overlay "
            f"for {project_id!r}: " + "; ".join(problems) + ". Remove it (docker network rm) "
            "after checking what uses it; it is never adopted."
        )
    return OverlayNetwork(project_id=project_id, name=str(attrs["Name"]), id=str(attrs["Id"]))


def ensure_overlay_network(client: docker.DockerClient, project_id: str) -> OverlayNetwork:
    """Return the project's overlay, creating it if it does not exist. Idempotent; a
    same-named network that is not exactly what this creates raises `SwarmError`."""

    def create() -> None:
        client.networks.create(
            overlay_name(project_id),
            driver="overlay",
            scope="swarm",
            attachable=True,
            internal=False,
            enable_ipv6=False,
            labels={PROJECT_LABEL: project_id},
        )

    return create_or_check(
        client,
        overlay_name(project_id),
        create,
        lambda attrs: _overlay_from(attrs, project_id),
        f"project {project_id!r}",
    )


def remove_overlay_network(
    client: docker.DockerClient, project_id: str, *, wait: float = 30.0
) -> bool:
    """Remove the project's overlay; False if there was none (or the engine is in no swarm).

    Refuses (`SwarmError`) a same-named network that is not a project overlay. Tasks of
    removed services leave it shortly after, and the node's view of the swarm's networks
    follows the managers' a moment later: this waits up to `wait` seconds for both, then
    says what is left."""
    name = overlay_name(project_id)
    attrs = lookup_network(client, name)
    if attrs is None:
        return False
    _overlay_from(attrs, project_id)
    deadline = time.monotonic() + wait
    while True:
        try:
            client.networks.get(str(attrs["Id"])).remove()
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if time.monotonic() >= deadline:
                raise SwarmError(f"cannot remove Docker network {name!r}: {exc}") from exc
            time.sleep(0.5)
        else:
            break
    while lookup_network(client, name) is not None:
        if time.monotonic() >= deadline:
            raise SwarmError(f"Docker network {name!r} was removed but is still listed")
        time.sleep(0.2)
    return True


def is_swarm_manager(client: docker.DockerClient) -> bool:
    """Whether this engine manages an active swarm (where workspaces are services)."""
    return _is_manager(client.info().get("Swarm") or {})


def _is_manager(swarm: dict[str, Any]) -> bool:
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


def swarm_networks(client: docker.DockerClient, project_id: str) -> SwarmNetworks:
    """Everything a project's workspace service needs, checked; `SwarmError` if not so."""
    node = swarm_node(client)
    gateway_bridge = get_gateway_bridge(client)  # before creating anything
    return SwarmNetworks(
        overlay=ensure_overlay_network(client, project_id),
        gateway_bridge=gateway_bridge,
        node_id=node,
    )
