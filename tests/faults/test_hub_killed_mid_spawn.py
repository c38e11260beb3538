"""The hub killed (SIGKILL) mid-spawn, then started again with the same command, as a
supervisor would; nothing else is done by hand.

The point: the workspace container runs and answers, the hub has recorded the server but
not yet that it is ready. It is chosen with the project's audit chain lock, which the test
holds: the spawner stops at its `server_started` record, its last step before the hub marks
the server ready, and is killed there.

What happens: every service the hub started dies with it (ours, and the idle culler run
through `tre.lifeline`; they would otherwise keep their ports and answer with credentials
the new hub no longer accepts, or run twice beside the new hub's copies); the new hub stops
the old proxy by its pid file; the researcher's login survives. The new hub finds the
server in its database and the container by its name, but not at the address it recorded
(the killed hub never learnt the container's), so after `Spawner.http_timeout` it stops
the server, which removes the container: no container is left that no hub knows. The
researcher then starts the workspace again. The audit holds the killed spawn's request,
closed by its stop, and no start for a server that never served; every chain verifies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import PROJECT, Site, containers_of
from tests.faults.conftest import RESEARCHER, firewall_in_place, ready
from tests.faults.locks import chain_locked, waiting_for_a_lock
from tests.faults.processes import alive, child_running, children_of, kill, wait_until
from tre.audit import AuditRecord, EventKind, open_store

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = (
    "-m tre.audit.service",
    "-m tre.review.web",
    "-m tre.hub.permit_watch",
    "-m jupyterhub_idle_culler",
)
"""The hub's managed services in this site (mirror and summaries are off)."""
SPAWNS = {EventKind.spawn_requested, EventKind.server_started, EventKind.server_stopped}
ALL = {*SPAWNS, EventKind.spawn_refused}


@dataclass(frozen=True)
class AfterTheKill:
    container: str
    """The container the killed hub had started."""
    records_before: int
    """The index of the killed spawn's request among the researcher's spawn records."""


def running_containers(site: Site) -> list[str]:
    return [c.id for c in containers_of(site.settings) if c.status == "running"]


def spawn_records(site: Site, kinds: set[EventKind] = SPAWNS) -> list[AuditRecord]:
    records = open_store(site.settings).show(project=PROJECT)
    return [r for r in records if r.actor == RESEARCHER and r.kind in kinds]


def spawn_quietly(user: HubUser) -> None:
    """The spawn form's POST, whose answer the killed hub never gives."""
    with contextlib.suppress(requests.ConnectionError):
        user.spawn(PROJECT)


@pytest.fixture(scope="module")
def after_the_kill(docker_site: Site, researcher: HubUser) -> Iterator[AfterTheKill]:
    site = docker_site
    if researcher.server(PROJECT) is not None:
        researcher.stop(PROJECT)
    before = len(spawn_records(site, ALL))
    hub = site.stack.hub
    assert hub is not None
    services = [child_running(hub.pid, needle) for needle in SERVICES]
    proxy = int((site.settings.hub_dir / "proxy.pid").read_text())
    assert sorted(children_of(hub.pid)) == sorted([*services, proxy])  # nothing unaccounted

    with ThreadPoolExecutor(1) as pool:
        for _ in range(5):  # another site on this host may put its firewall rules in between
            firewall_in_place(site)
            spawning = pool.submit(spawn_quietly, researcher)
            answer = wait_until(lambda n=before: spawn_records(site, ALL)[n:], 60, "the spawn")
            if answer[0].kind is EventKind.spawn_requested:
                break
            spawning.result()
            before = len(spawn_records(site, ALL))
        with chain_locked(site.settings, PROJECT):
            [container] = wait_until(lambda: running_containers(site), 90, "the container")
            wait_until(lambda: waiting_for_a_lock(hub.pid), 90, "the hub to record the start")
            kill(hub.pid)
    hub.wait()

    # The hub's children: every service ends with it; the proxy waits for the next hub.
    wait_until(lambda: not any(alive(p) for p in services), 10, "the services to end")
    assert alive(proxy)

    # The supervisor's command (`tre hub run`): the firewall rules, then the same hub.
    firewall_in_place(site)
    site.stack.hub = None
    site.stack._start_hub()  # the command, environment and folder of `tre stack start`
    assert not alive(proxy)
    yield AfterTheKill(container, len(spawn_records(site)) - 1)


def test_the_restarted_hub_stops_the_half_started_server_and_a_new_start_works(
    docker_site: Site, researcher: HubUser, after_the_kill: AfterTheKill
) -> None:
    site = docker_site
    assert researcher.get("/hub/api/").status_code == 200  # still logged in
    # The hub gives up on the address it recorded (Spawner.http_timeout is 60 s): the
    # server is pending its check until then, and cannot be used or started again.
    wait_until(lambda: researcher.server(PROJECT) is None, 120, "the hub to stop the server")
    assert running_containers(site) == []  # the killed hub's container is gone

    ready(site, researcher)
    out = researcher.execute(PROJECT, "import os; print(sorted(os.listdir('/data'))[0])")
    assert out.strip() == "clinical-records"
    [running] = running_containers(site)
    assert running != after_the_kill.container

    kinds = [r.kind for r in spawn_records(site)[after_the_kill.records_before :]]
    assert kinds == [
        EventKind.spawn_requested,  # the killed spawn
        EventKind.server_stopped,  # ... closed by the restarted hub's stop
        EventKind.spawn_requested,
        EventKind.server_started,
    ], kinds
    assert open_store(site.settings).verify().ok
