"""One real Docker site per module for the faults that involve a workspace container (the
hub killed mid-spawn, the proxy killed, the audit service killed mid-execution; module scope:
in a folder that is not a Python package, pytest keeps a "package" fixture up to the end of
the session, beside the sites of later suites): the same parts as tests/e2e (OIDC provider,
JupyterHub, its proxy and services, the project spawner, the workspace image), data really
ingested.

The site is torn down with the containers its own hub made and no others (other sites
may be running on the same engine). bob, a member of gbm-linkage, is the researcher.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hubclient import HubUser, error_of
from tests.e2e.sites import PROJECT, Site, running_site
from tre.hub.config import firewall_rules
from tre.hub.firewall import apply_rules

RESEARCHER = "bob"


@pytest.fixture(scope="module")
def docker_site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("faults-site"), demo_silos, workspace_image) as site:
        yield site


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


@pytest.fixture(scope="module")
def researcher(docker_site: Site) -> HubUser:
    """bob, logged in through the OIDC provider's form."""
    return docker_site.user(RESEARCHER)
