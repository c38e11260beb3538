"""A project workspace started by the swarm backend, with the isolation checks repeated.

Real parts throughout: the engine joins a single-node swarm (made here, and left at the
end, only if it was in none), with `docker_gwbridge` created first as jupyter-tre needs
it; the site runs the bundled OIDC provider, JupyterHub with `hub.backend: swarm` and
its services; alice logs in and starts gbm-linkage, which becomes a swarm service. From
inside it the workspace probe of tests/e2e/test_workspace.py runs again; the service's
spec is read back from the engine; another project's service is shown unreachable;
stopping the server removes the service; and at the end the project is suspended (its
service removed) and archived (its overlay removed).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.services import Service

from tests.e2e.hubclient import HubUser, error_of
from tests.e2e.isolation import GBM_DATASETS, WORKSPACE_MOUNTS, probe_workspace, unexpected_mounts
from tests.e2e.sites import Site, running_site
from tre.audit import EventKind, open_store
from tre.hub.config import firewall_rules
from tre.hub.firewall import apply_rules
from tre.hub.lifecycle import archive, suspend
from tre.hub.networks import PROJECT_LABEL, lookup_network
from tre.hub.plan import WORK_DIR
from tre.policy import load_policy
from tre.swarm.networks import (
    GATEWAY_BRIDGE,
    GATEWAY_NETWORK,
    GatewayBridge,
    SwarmError,
    create_gateway_bridge,
    ensure_overlay_network,
    gateway_problems,
    get_gateway_bridge,
    overlay_name,
    swarm_node,
)
from tre.swarm.spawner import gateway_address

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

PROJECT = "gbm-linkage"
WORKSPACE_LABEL = f"org.jupyter-tre.project={PROJECT}"
OTHER_PROJECT = "hf-outcomes"
PROJECT_MOVES = (EventKind.project_suspended, EventKind.project_archived)


@pytest.fixture(scope="module")
def swarm(docker_engine: object) -> Iterator[str]:
    """This engine as a single-node swarm manager (its node id), with the gateway bridge
    jupyter-tre needs; whatever this fixture made is undone after the module."""
    client = docker.from_env()
    state = (client.info().get("Swarm") or {}).get("LocalNodeState")
    made_gateway = made_swarm = False
    if state == "inactive":
        if lookup_network(client, GATEWAY_NETWORK) is None:
            create_gateway_bridge(client)
            made_gateway = True
        # Loopback only: the swarm's control and data ports never face the network.
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        made_swarm = True
    elif state != "active":
        pytest.fail(f"the Docker engine's swarm state is {state!r}; expected inactive or active")
    try:
        yield swarm_node(client)
    finally:
        if made_swarm:
            client.swarm.leave(force=True)
        if made_gateway:
            _remove_gateway_bridge(client)


def _remove_gateway_bridge(client: docker.DockerClient) -> None:
    for _ in range(20):  # the swarm's own endpoints on it go away shortly after leaving
        try:
            client.networks.get(GATEWAY_NETWORK).remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(0.5)
        else:
            return
    pytest.fail(f"could not remove {GATEWAY_NETWORK} made by this test")


@pytest.fixture(scope="module")
def gateway_bridge(swarm: str) -> GatewayBridge:
    return get_gateway_bridge(docker.from_env())


@pytest.fixture(scope="module")
def site(
    swarm: str, tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("swarm-site")
    with running_site(root, demo_silos, workspace_image, backend="swarm") as s:
        yield s


def own_firewall(site: Site) -> None:
    """Put this site's rules back: a site started meanwhile by another test run on this
    host rewrites the shared chains with its own ports (the spawner then refuses)."""
    apply_rules(firewall_rules(site.settings))


@pytest.fixture(scope="module")
def alice(site: Site) -> HubUser:
    user = site.user("alice")
    own_firewall(site)
    response = user.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    user.wait_ready(PROJECT)
    return user


def workspace_services() -> list[Service]:
    return list(docker.from_env().services.list(filters={"label": WORKSPACE_LABEL}))


@pytest.fixture(scope="module")
def service(alice: HubUser) -> Service:
    [found] = workspace_services()
    return found


@pytest.fixture(scope="module")
def inside(
    site: Site,
    alice: HubUser,
    gateway_bridge: GatewayBridge,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, object]:
    """Facts read from inside alice's running workspace (the same probe as on Docker)."""
    own_firewall(site)
    return probe_workspace(
        alice, PROJECT, str(gateway_bridge.gateway), tmp_path_factory.mktemp("outside")
    )


def _task_container(service: Service) -> str:
    [task] = [t for t in service.tasks() if t["DesiredState"] == "running"]
    return str(task["Status"]["ContainerStatus"]["ContainerID"])


# -- the service as the engine holds it ----------------------------------------------------------


def test_the_workspace_is_a_swarm_service_with_a_hardened_spec(
    service: Service, swarm: str, gateway_bridge: GatewayBridge
) -> None:
    spec = service.attrs["Spec"]
    assert spec["EndpointSpec"] == {"Mode": "dnsrr"}
    assert "Ports" not in (service.attrs.get("Endpoint") or {}).get("Spec", {})
    assert spec["Labels"] == {
        "org.jupyter-tre.project": PROJECT,
        "org.jupyter-tre.permit": "gbm-linkage-2026",
    }
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["User"] == "1000:100"
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert "CapabilityAdd" not in container
    assert container["DNSConfig"]["Nameservers"] == [str(gateway_bridge.gateway)]
    binds = {m["Target"]: m for m in container["Mounts"] if m["Type"] == "bind"}
    assert set(binds) | {"/tmp"} == WORKSPACE_MOUNTS
    writable = {target for target, m in binds.items() if not m.get("ReadOnly")}
    assert writable == {str(WORK_DIR)}, "only the project workspace may be writable"
    [tmp] = [m for m in container["Mounts"] if m["Type"] == "tmpfs"]
    assert tmp["Target"] == "/tmp"
    limits = task["Resources"]["Limits"]
    assert limits == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 6 * 1024**3, "Pids": 512}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == [f"node.id=={swarm}"]
    overlay = docker.from_env().networks.get(overlay_name(PROJECT))
    assert [n["Target"] for n in task["Networks"]] == [overlay.id]
    assert overlay.attrs["Scope"] == "swarm" and overlay.attrs["Attachable"] is True
    assert overlay.attrs["Labels"] == {PROJECT_LABEL: PROJECT}


def test_the_gateway_bridge_is_confined_by_the_firewall_rules(
    gateway_bridge: GatewayBridge,
) -> None:
    client = docker.from_env()
    attrs = client.networks.get(GATEWAY_NETWORK).attrs
    assert gateway_problems(attrs) == []
    # Docker's own docker_gwbridge (the one `swarm init` makes) is refused, each way.
    options = attrs["Options"]
    for key, value, problem in (
        ("com.docker.network.bridge.name", "docker_gwbridge", "firewall would not match"),
        ("com.docker.network.bridge.enable_icc", "true", "inter-container traffic"),
        ("com.docker.network.bridge.enable_ip_masquerade", "true", "masquerading"),
    ):
        changed = {**attrs, "Options": {**options, key: value}}
        assert any(problem in p for p in gateway_problems(changed)), key
    # The host firewall's `tre+` jump covers it: it is there for the bridge right now.
    assert gateway_bridge.bridge == GATEWAY_BRIDGE
    assert gateway_bridge.bridge.startswith("tre")


def test_a_same_named_overlay_that_is_not_ours_is_refused(swarm: str) -> None:
    client = docker.from_env()
    project = f"swarm-test-{secrets.token_hex(4)}"
    impostor = client.networks.create(
        overlay_name(project), driver="overlay", attachable=True, scope="swarm"
    )
    try:
        with pytest.raises(SwarmError, match=f"label {PROJECT_LABEL} is missing"):
            ensure_overlay_network(client, project)
    finally:
        impostor.remove()


# -- the workspace from inside (the checks of test_workspace.py) --------------------------------


def test_only_the_permitted_datasets_are_mounted_read_only(inside: dict[str, object]) -> None:
    assert inside["datasets"] == GBM_DATASETS
    mounts: list[str] = inside["mounts"]  # type: ignore[assignment]
    assert unexpected_mounts(mounts) == set()
    assert set(mounts) >= WORKSPACE_MOUNTS
    assert inside["write_data"] == "refused: Read-only file system"
    assert inside["write_data_file"] == "refused: Read-only file system"
    assert str(inside["chmod_data"]).startswith("refused:")
    assert str(inside["write_work"]).startswith("ok")


def test_the_workspace_runs_as_a_non_root_user_without_capabilities(
    inside: dict[str, object],
) -> None:
    assert (inside["uid"], inside["gid"]) == (1000, 100)
    assert inside["cap_eff"] == "0000000000000000"
    assert inside["cap_bnd"] == "0000000000000000"
    assert inside["write_root"] == "refused: Read-only file system"
    assert inside["write_home"] == "refused: Read-only file system"
    assert str(inside["write_tmp"]).startswith("ok")
    assert inside["pids_max"] == "512"
    assert inside["mem_limit"] == str(6 * 1024**3)
    assert inside["env"] == {
        "PYTHONNOUSERSITE": "1",
        "JUPYTERHUB_DISABLE_USER_CONFIG": "1",
        "TRE_PROJECT": PROJECT,
        "TRE_PERMIT": "gbm-linkage-2026",
    }


SETUID_SCAN = r"""
import os, stat
found = []
for top in ("/usr", "/bin", "/sbin", "/lib", "/opt", "/etc", "/home", "/var"):
    for root, dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(path)
            try:
                if os.getxattr(path, "security.capability", follow_symlinks=False):
                    found.append(path + " (file capabilities)")
            except OSError:
                pass
print(found)
"""


def test_without_no_new_privileges_nothing_in_the_image_could_raise_privileges(
    alice: HubUser, inside: dict[str, object]
) -> None:
    """The service API of this engine has no `no-new-privileges` (see the how-to): what
    stands in for it is that no binary could give more privilege on exec. Each claim
    here would fail if that stand-in were missing."""
    assert inside["no_new_privs"] in ("0", "1")  # "1" only on an engine that sets it
    assert inside["cap_bnd"] == "0000000000000000"  # file capabilities could grant nothing
    assert alice.execute(PROJECT, SETUID_SCAN).strip() == "[]"


def test_no_egress_and_no_host_port_beyond_the_allowed_ones(inside: dict[str, object]) -> None:
    assert str(inside["dns"]).startswith("refused")
    for probe in ("outside", "host_main", "gateway_other_port"):
        assert str(inside[probe]).startswith("refused"), (probe, inside[probe])


def test_the_workspace_reaches_the_hub_and_the_audit_service(site: Site, alice: HubUser) -> None:
    # The Lab extension runs no code without the audit service confirming the record first.
    store = open_store(site.settings)
    before = len(store.show(project=PROJECT, kind=EventKind.execute))
    assert alice.execute(PROJECT, "print(6 * 7)").strip() == "42"
    assert len(store.show(project=PROJECT, kind=EventKind.execute)) > before


@contextlib.contextmanager
def _other_project_service(swarm: str, image: str) -> Iterator[Service]:
    """A listener in another project's overlay, hardened like nothing: only the network
    stands between it and alice's workspace."""
    client = docker.from_env()
    network = ensure_overlay_network(client, OTHER_PROJECT)
    name = f"tre-swarm-test-{secrets.token_hex(4)}"
    other = client.services.create(
        image,
        command=["python3", "-m", "http.server", "8123"],
        name=name,
        networks=[network.name],
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        constraints=[f"node.id=={swarm}"],
        restart_policy=docker.types.RestartPolicy(condition="none"),
        labels={"org.jupyter-tre.test": "swarm"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = other.tasks()
            if tasks and tasks[0]["Status"]["State"] == "running":
                break
            time.sleep(0.5)
        yield other
    finally:
        other.remove()


def test_another_projects_service_is_unreachable(
    alice: HubUser, swarm: str, site: Site, gateway_bridge: GatewayBridge
) -> None:
    client = docker.from_env()
    with _other_project_service(swarm, site.settings.hub.image) as other:
        container = client.containers.get(_task_container(other))
        overlay_ip = container.attrs["NetworkSettings"]["Networks"][overlay_name(OTHER_PROJECT)][
            "IPAddress"
        ]
        gw_attrs = client.networks.get(GATEWAY_NETWORK).attrs
        gw_ip = str(gateway_address(gw_attrs, container.id))
        # The positive control: it does answer, from the host (whose firewall allows it).
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((gw_ip, 8123), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        code = f"""
import socket
for host in ({gw_ip!r}, {overlay_ip!r}):
    try:
        socket.create_connection((host, 8123), timeout=3).close()
        print(host, "open")
    except OSError as e:
        print(host, "refused", type(e).__name__)
"""
        out = alice.execute(PROJECT, code)
    assert "open" not in out, out
    assert out.count("refused") == 2, out


# -- stopping ---------------------------------------------------------------------------------


def test_stopping_the_server_removes_the_service(site: Site, alice: HubUser) -> None:
    client = docker.from_env()
    [service] = workspace_services()
    assert service.name == "tre-alice--gbm-2dlinkage"  # DockerSpawner's escaped name
    container_id = _task_container(service)
    alice.stop(PROJECT)
    assert workspace_services() == []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.containers.get(container_id)
        except docker.errors.NotFound:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the task container {container_id[:12]} outlived its service")
    stop = open_store(site.settings).show(project=PROJECT, kind=EventKind.server_stopped)[-1]
    peak: Any = stop.detail["peak_memory_bytes"]
    assert isinstance(peak, int) and peak > 10 * 2**20, stop.detail


# -- a project's life: suspended, then archived ------------------------------------------------


def test_suspending_removes_the_service_and_archiving_the_overlay(
    site: Site, alice: HubUser
) -> None:
    client = docker.from_env()
    own_firewall(site)
    response = alice.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    alice.wait_ready(PROJECT)
    [service] = workspace_services()
    policy = load_policy(site.settings.policy_dir)

    done = suspend(site.settings, policy, PROJECT, by="adam", reason="swarm test")
    assert f"service {service.name}" in done[0], done
    assert workspace_services() == []  # a swarm would otherwise keep it (and the overlay)
    assert lookup_network(client, overlay_name(PROJECT)) is not None

    done = archive(site.settings, policy, PROJECT, by="adam", reason="swarm test", confirm=PROJECT)
    assert f"removed overlay network {overlay_name(PROJECT)}" in done, done
    assert lookup_network(client, overlay_name(PROJECT)) is None
    moves = [
        r.kind for r in open_store(site.settings).show(project=PROJECT) if r.kind in PROJECT_MOVES
    ]
    suspended, archived = PROJECT_MOVES  # archiving suspends first, then archives
    assert moves[-3:] == [suspended, suspended, archived], moves
