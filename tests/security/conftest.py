"""One real site for the whole attack suite, and everyone at it, made once per run.

The site is `tests.e2e.sites.running_site` with the summaries service on: the real OIDC
provider, JupyterHub and its proxy, the audit, review and summaries services, the host
firewall, gbm-linkage's datasets ingested. hf-outcomes' permit is moved to hold today and
its dataset ingested, so that carla runs a second project's workspace next to alice's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import docker
import pytest

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import PROJECT, Site, running_site
from tests.security.support import (
    OTHER_PROJECT,
    OTHER_SECRET,
    PASSING,
    Parties,
    Workspace,
    workspace_folder_file,
)
from tre.ingest import granted_versions, ingest_version
from tre.policy import load_policy

__all__ = ["parties", "site"]

PEOPLE = ("alice", "bob", "carla", "olivia", "oscar", "adam", "pat")


def open_second_project(site: Site) -> None:
    """hf-outcomes' permit current from today (running_site ends it yesterday), its
    clinical-records copy ingested."""
    today = date.today()
    permits = site.policy_dir / "permits.yaml"
    text = permits.read_text(encoding="utf-8")
    head, sep, hf = text.partition("\n  - id: hf-outcomes-2026")
    assert sep, "hf-outcomes-2026 is not in the demo permits"
    hf = re.sub(r"expiry: \S+", f"expiry: {today + timedelta(days=365)}", hf, count=1)
    permits.write_text(head + sep + hf, encoding="utf-8")
    settings = site.settings
    policy = load_policy(settings.policy_dir, today)
    for dataset, version, _ in granted_versions(settings, policy, OTHER_PROJECT, today):
        ingest_version(settings, policy, OTHER_PROJECT, dataset, version, today=today)


def started(site: Site, user: HubUser, project: str) -> Workspace:
    response = user.spawn(project)
    assert response.status_code in (200, 302), response.text[:500]
    user.wait_ready(project)
    token = user.execute(project, "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").strip()
    [container] = [
        c
        for c in docker.from_env().containers.list(
            filters={"label": f"org.jupyter-tre.project={project}"}
        )
        if c.name.startswith(f"tre-{user.username}-")  # the server name is escaped
    ]
    [network] = container.attrs["NetworkSettings"]["Networks"].values()
    return Workspace(user, project, token, network["IPAddress"])


@pytest.fixture(scope="session")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("security")
    with running_site(root, demo_silos, workspace_image, publish=True) as s:
        open_second_project(s)
        workspace_folder_file(s, PROJECT, "ok.csv", PASSING)
        workspace_folder_file(s, OTHER_PROJECT, "carla-secret.csv", f"id\n{OTHER_SECRET}\n")
        yield s


@pytest.fixture(scope="session")
def parties(site: Site) -> Parties:
    """Everyone logged in through the OIDC provider; alice's and carla's workspaces running."""
    people = {name: site.user(name) for name in PEOPLE}
    alice = started(site, people["alice"], PROJECT)
    carla = started(site, people["carla"], OTHER_PROJECT)
    return Parties(site, people, alice, carla)
