"""One internal Docker network per project, with a bridge the host firewall can name.

Invariant: a network this module returns is an `--internal` bridge network without
IPv6, labelled `org.jupyter-tre.project=<id>`, whose Linux bridge is called
`tre` + 10 hex digits of SHA-256(project id); a same-named network that differs
in any of these is refused, never adopted or repaired.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
from docker.models.networks import Network

T = TypeVar("T")

PROJECT_LABEL = "org.jupyter-tre.project"
"""Docker label carrying the project id on every project network."""

BRIDGE_PREFIX = "tre"
"""Every project bridge is named with this prefix; the firewall matches `tre+`."""

NETWORK_PREFIX = "tre-project-"
"""Docker network names are this prefix plus the project id."""

BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"

_PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # the policy's Slug
_BRIDGE_HEX = 10
_IFNAMSIZ = 15  # Linux interface names: 15 characters and a NUL


class ProjectNetworkError(RuntimeError):
    """A project network cannot be created, used or removed as asked."""


@dataclass(frozen=True)
class HostLeg:
    """A Linux bridge where workspaces meet the host (its name matches the firewall's `tre+`)."""

    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    """The host's address on the bridge: the only address workspaces may reach."""

    def hub_url(self, port: int, scheme: str = "http") -> str:
        """The URL at which containers on this bridge reach a hub-side port."""
        return f"{scheme}://{self.gateway}:{port}"


@dataclass(frozen=True)
class ProjectNetwork(HostLeg):
    """A project's internal network as the Docker engine reports it."""

    project_id: str
    name: str
    id: str


def check_project_id(project_id: str) -> None:
    """Raise `ProjectNetworkError` unless `project_id` is a policy slug."""
    if not _PROJECT_ID.fullmatch(project_id):
        raise ProjectNetworkError(
            f"project id {project_id!r} is not a slug "
            "(lower-case letters, digits and '-', at most 63, starting with a letter or digit)"
        )


def network_name(project_id: str) -> str:
    """The Docker network name of a project: `tre-project-<id>`."""
    check_project_id(project_id)
    return NETWORK_PREFIX + project_id


def bridge_name(project_id: str) -> str:
    """The host bridge of a project: `tre` + 10 hex of SHA-256(id), 13 characters."""
    check_project_id(project_id)
    digest = hashlib.sha256(project_id.encode("utf-8")).hexdigest()[:_BRIDGE_HEX]
    name = BRIDGE_PREFIX + digest
    assert len(name) <= _IFNAMSIZ
    return name


def _problems(attrs: dict[str, Any], project_id: str) -> list[str]:
    """Why a network's attributes do not make it this project's network (empty: they do)."""
    problems = []
    if attrs.get("Driver") != "bridge":
        problems.append(f"driver is {attrs.get('Driver')!r}, not 'bridge'")
    if attrs.get("Internal") is not True:
        problems.append("it is not internal (containers on it could reach the outside)")
    if attrs.get("EnableIPv6"):
        problems.append("IPv6 is enabled")
    labels = attrs.get("Labels") or {}
    if labels.get(PROJECT_LABEL) != project_id:
        found = labels.get(PROJECT_LABEL)
        problems.append(
            f"label {PROJECT_LABEL} is {found!r}, not {project_id!r}"
            if found is not None
            else f"label {PROJECT_LABEL} is missing"
        )
    options = attrs.get("Options") or {}
    expected_bridge = bridge_name(project_id)
    if options.get(BRIDGE_NAME_OPTION) != expected_bridge:
        problems.append(
            f"bridge is {options.get(BRIDGE_NAME_OPTION)!r}, not {expected_bridge!r} "
            "(the host firewall would not match it)"
        )
    problems += ipv4_problems(attrs)
    return problems


def ipv4_problems(attrs: dict[str, Any]) -> list[str]:
    """Why a network's IPAM is not one IPv4 subnet with a gateway (empty: it is)."""
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    v4 = [c for c in configs if ":" not in str(c.get("Subnet", ":"))]
    if len(v4) != 1 or not v4[0].get("Gateway"):
        return [f"expected one IPv4 subnet with a gateway, found {configs!r}"]
    return []


def ipv4_subnet(attrs: dict[str, Any]) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The (subnet, gateway) of a network that passed `ipv4_problems`; raises
    `ProjectNetworkError` when the gateway lies outside the subnet."""
    config = next(c for c in attrs["IPAM"]["Config"] if ":" not in str(c.get("Subnet", ":")))
    subnet = ipaddress.IPv4Network(config["Subnet"])
    gateway = ipaddress.IPv4Address(config["Gateway"])
    if gateway not in subnet:
        raise ProjectNetworkError(
            f"Docker network {attrs.get('Name')!r}: gateway {gateway} is outside {subnet}"
        )
    return subnet, gateway


def _from_attrs(attrs: dict[str, Any], project_id: str) -> ProjectNetwork:
    problems = _problems(attrs, project_id)
    if problems:
        raise ProjectNetworkError(
            f"Docker network {attrs.get('Name')!r} exists but is not a jupyter-tre project "
            f"network for {project_id!r}: " + "; ".join(problems) + ". Remove it "
            "(docker network rm) after checking what uses it; it is never adopted."
        )
    subnet, gateway = ipv4_subnet(attrs)
    return ProjectNetwork(
        project_id=project_id,
        name=str(attrs["Name"]),
        id=str(attrs["Id"]),
        bridge=bridge_name(project_id),
        subnet=subnet,
        gateway=gateway,
    )


def lookup_network(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    """The attributes of the network named exactly `name`, or None."""
    # The engine's name filter matches substrings: keep exact matches only.
    found = [n for n in client.networks.list(names=[name]) if n.name == name]
    if len(found) > 1:
        raise ProjectNetworkError(
            f"{len(found)} Docker networks are named {name!r}; remove the duplicates"
        )
    if not found:
        return None
    network: Network = client.networks.get(found[0].id)  # full attributes, IPAM included
    attrs: dict[str, Any] = network.attrs
    return attrs


def get_project_network(client: docker.DockerClient, project_id: str) -> ProjectNetwork | None:
    """The project's network if it exists (checked, see the module invariant), else None."""
    attrs = lookup_network(client, network_name(project_id))
    return None if attrs is None else _from_attrs(attrs, project_id)


def ensure_project_network(
    client: docker.DockerClient,
    project_id: str,
    subnet: ipaddress.IPv4Network | None = None,
) -> ProjectNetwork:
    """Return the project's internal network, creating it if it does not exist.

    Idempotent. Raises `ProjectNetworkError` if a network of that name exists but
    is not exactly what this module creates. `subnet`: a fixed subnet (gateway: its
    first address), for a network whose containers need addresses known in advance;
    an existing network on another subnet is refused.
    """
    name = network_name(project_id)
    ipam = None
    if subnet is not None:
        ipam = docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))
            ]
        )

    def create() -> None:
        client.networks.create(
            name,
            driver="bridge",
            internal=True,
            enable_ipv6=False,
            check_duplicate=True,
            ipam=ipam,
            labels={PROJECT_LABEL: project_id},
            options={
                BRIDGE_NAME_OPTION: bridge_name(project_id),
                # Nothing may be forwarded off the bridge: no NAT either.
                "com.docker.network.bridge.enable_ip_masquerade": "false",
            },
        )

    return create_or_check(
        client,
        name,
        create,
        lambda attrs: _checked_subnet(_from_attrs(attrs, project_id), subnet),
        f"project {project_id!r}",
    )


def create_or_check(
    client: docker.DockerClient,
    name: str,
    create: Callable[[], None],
    check: Callable[[dict[str, Any]], T],
    purpose: str,
) -> T:
    """`check` applied to the network `name`, which `create` makes first if it does not
    exist. Idempotent; `check` raises for a same-named network that is not what `create`
    makes (it is never adopted), and `ProjectNetworkError` says why creation failed."""
    existing = lookup_network(client, name)
    if existing is not None:
        return check(existing)
    try:
        create()
    except docker.errors.APIError as exc:
        # Another process may have created it between lookup and create.
        raced = lookup_network(client, name)
        if raced is not None:
            return check(raced)
        raise ProjectNetworkError(
            f"cannot create Docker network {name!r} for {purpose}: {exc}"
        ) from exc
    created = lookup_network(client, name)
    if created is None:
        raise ProjectNetworkError(f"Docker network {name!r} vanished right after creation")
    return check(created)


def _checked_subnet(
    network: ProjectNetwork, subnet: ipaddress.IPv4Network | None
) -> ProjectNetwork:
    if subnet is not None and network.subnet != subnet:
        raise ProjectNetworkError(
            f"Docker network {network.name!r} has subnet {network.subnet}, not {subnet}: "
            "remove it (docker network rm) after checking what uses it, or set the subnet "
            "it has"
        )
    return network


def remove_project_network(client: docker.DockerClient, project_id: str) -> bool:
    """Remove the project's network; False if there was none.

    Refuses (`ProjectNetworkError`) a same-named network that is not a project
    network, and a network that containers are still attached to.
    """
    name = network_name(project_id)
    attrs = lookup_network(client, name)
    if attrs is None:
        return False
    _from_attrs(attrs, project_id)
    attached = sorted(str(c.get("Name")) for c in (attrs.get("Containers") or {}).values())
    if attached:
        raise ProjectNetworkError(
            f"Docker network {name!r} still has containers attached: {', '.join(attached)}"
        )
    try:
        client.networks.get(str(attrs["Id"])).remove()
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        raise ProjectNetworkError(f"cannot remove Docker network {name!r}: {exc}") from exc
    return True


def project_networks(client: docker.DockerClient) -> list[ProjectNetwork]:
    """Every project network on the engine, sorted by project id.

    A network carrying the project label that breaks the invariant raises
    `ProjectNetworkError` rather than being left out silently.
    """
    networks = []
    for summary in client.networks.list(filters={"label": PROJECT_LABEL}):
        attrs: dict[str, Any] = client.networks.get(summary.id).attrs
        project_id = str((attrs.get("Labels") or {}).get(PROJECT_LABEL, ""))
        try:
            check_project_id(project_id)
        except ProjectNetworkError as exc:
            raise ProjectNetworkError(
                f"Docker network {attrs.get('Name')!r} carries {PROJECT_LABEL}: {exc}"
            ) from exc
        if attrs.get("Name") != network_name(project_id):
            raise ProjectNetworkError(
                f"Docker network {attrs.get('Name')!r} carries {PROJECT_LABEL}={project_id} "
                f"but is not named {network_name(project_id)!r}"
            )
        networks.append(_from_attrs(attrs, project_id))
    return sorted(networks, key=lambda n: n.project_id)
