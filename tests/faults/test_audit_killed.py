"""The audit service (`tre-audit`) killed with SIGKILL while a cell runs in a workspace.

The cell that runs was recorded before it reached the kernel, so it finishes and its record
stays. While the service is down every further cell is refused by the workspace and not run
(fail closed). JupyterHub starts its service again (it polls every 30 s); the next cell then
runs without anyone doing anything, on a new connection the workspace opens by itself.
Every cell that ran has exactly one record, the refused one none, and the chain verifies.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.e2e.hubclient import HubUser, KernelChannel
from tests.e2e.sites import PROJECT, Site
from tests.faults.conftest import RESEARCHER, ready
from tests.faults.processes import child_running, kill, wait_until
from tre.audit import EventKind, open_store

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

WORK = "/home/researcher/work"
RESTART_SECONDS = 60  # JupyterHub polls its managed services every 30 s (±10 %)


def audit_pid(site: Site) -> int:
    assert site.stack.hub is not None
    return child_running(site.stack.hub.pid, "-m tre.audit.service")


def wait_for_the_kernel_to_start(kernel: KernelChannel, msg_id: str) -> None:
    """Until the kernel takes up `msg_id` (its execute_input: the record was confirmed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = kernel.receive(max(1.0, deadline - time.monotonic()))
        if (
            reply.get("parent_header", {}).get("msg_id") == msg_id
            and reply["header"]["msg_type"] == "execute_input"
        ):
            return
    raise TimeoutError(f"the kernel did not start {msg_id}")


def test_a_cell_runs_on_others_are_refused_until_the_hub_restarts_the_service(
    docker_site: Site, researcher: HubUser
) -> None:
    site = docker_site
    user = ready(site, researcher)
    tag = uuid.uuid4().hex[:12]
    work = site.settings.workspaces_dir / PROJECT
    cells = {
        name: f"open('{WORK}/{tag}-{name}.txt', 'w').write('{name}'); print('{name}')"
        for name in ("before", "during", "refused", "after")
    }
    cells["during"] = "import time; time.sleep(3); " + cells["during"]
    pid = audit_pid(site)

    with user.kernel(PROJECT) as kernel:
        assert kernel.run(cells["before"]).raise_for_error() == "before\n"
        during = kernel.execute_request(cells["during"])
        kernel.send(during)
        wait_for_the_kernel_to_start(kernel, during["header"]["msg_id"])
        kill(pid)
        assert kernel.collect(during["header"]["msg_id"]).raise_for_error() == "during\n"

        refused = kernel.run(cells["refused"])
        assert refused.error is not None and refused.error.ename == "AuditUnavailable"
        assert "could not be reached" in refused.error.evalue
        assert not (work / f"{tag}-refused.txt").exists()  # not run

        def back() -> bool:
            try:
                health = f"http://127.0.0.1:{site.settings.audit.port}/health"
                up = requests.get(health, timeout=2).status_code == 200
            except requests.ConnectionError:
                return False
            return up and audit_pid(site) != pid

        wait_until(back, RESTART_SECONDS, "the hub to restart tre-audit", every=0.5)
        assert kernel.run(cells["after"]).raise_for_error() == "after\n"

    for name in ("before", "during", "after"):
        assert (work / f"{tag}-{name}.txt").read_text() == name
    records = [
        r
        for r in open_store(site.settings).show(project=PROJECT)
        if r.kind is EventKind.execute and r.actor == RESEARCHER and tag in r.detail.get("code", "")
    ]
    assert [r.detail["code"] for r in records] == [
        cells["before"],
        cells["during"],
        cells["after"],
    ]
    assert open_store(site.settings).verify().ok
