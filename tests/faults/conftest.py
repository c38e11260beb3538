"""One real Docker site for the faults that involve a workspace container (the hub killed
mid-spawn, the proxy killed, the audit service killed mid-execution), shared by their
modules: the same parts as tests/e2e (OIDC provider, JupyterHub, its proxy and services,
the project spawner, the workspace image), data really ingested.

The site is torn down with the containers its own hub made and no others (other sites
may be running on the same engine). bob, a member of gbm-linkage, is the researcher.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.e2e.conftest import docker_engine, workspace_build, workspace_image
from tests.e2e.hubclient import HubUser, error_of
from tests.e2e.sites import PROJECT, Site, policy_for_today, site_settings
from tre.hub.config import firewall_rules
from tre.hub.firewall import apply_rules
from tre.ingest import granted_versions, ingest_version
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import Settings
from tre.stack import Stack

__all__ = ["docker_engine", "workspace_build", "workspace_image"]  # the session's one image

RESEARCHER = "bob"


@dataclass(frozen=True)
class Container:
    id: str
    status: str


def containers_of(settings: Settings) -> list[Container]:
    """Workspace containers (any state) made by this site's hub: they call its port. Other
    sites' containers may come and go meanwhile."""
    api = docker.from_env().api
    mine = []
    for summary in api.containers(all=True, filters={"label": "org.jupyter-tre.project"}):
        try:
            env = api.inspect_container(summary["Id"])["Config"].get("Env") or []
        except docker.errors.NotFound:
            continue
        if any(
            e.startswith("JUPYTERHUB_API_URL=") and f":{settings.hub.hub_port}/" in e for e in env
        ):
            mine.append(Container(summary["Id"], summary["State"]))
    return mine


@pytest.fixture(scope="package")
def docker_site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("faults-site")
    today = date.today()
    settings = site_settings(root, workspace_image)
    policy_for_today(settings.policy_dir, today)
    settings.var_dir.mkdir()
    (settings.var_dir / "silos").symlink_to(demo_silos, target_is_directory=True)
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(settings.policy_dir, today)
    for dataset, version, _ in granted_versions(settings, policy, PROJECT, today):
        ingest_version(settings, policy, PROJECT, dataset, version, today=today)
    stack = Stack(settings)
    stack.start()
    try:
        yield Site(settings, stack, settings.policy_dir)
    finally:
        stack.stop()
        client = docker.from_env()
        for container in containers_of(settings):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container.id, force=True)


def firewall_in_place(site: Site) -> None:
    """This site's host firewall rules, as `tre stack start` and the hub's unit put them
    before the hub starts (a no-op when they are in place; other sites on this host may
    have put theirs, and the spawner refuses to start a workspace without the site's own)."""
    apply_rules(firewall_rules(site.settings))


def ready(site: Site, user: HubUser) -> HubUser:
    """`user` with their gbm-linkage workspace running and answering (and reaching the
    hub side: this site's firewall rules in place)."""
    firewall_in_place(site)
    server = user.server(PROJECT)
    if not (server and server.get("ready")):
        for _ in range(3):  # another site on this host may put its rules in between
            firewall_in_place(site)
            response = user.spawn(PROJECT)
            if "network is not protected" not in error_of(response):
                break
        assert response.status_code in (200, 302), error_of(response)
    user.wait_ready(PROJECT)
    return user


@pytest.fixture(scope="package")
def researcher(docker_site: Site) -> HubUser:
    """bob, logged in through the OIDC provider's form."""
    return docker_site.user(RESEARCHER)
