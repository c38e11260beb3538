"""The proxy (configurable-http-proxy, started by the hub) killed with SIGKILL.

JupyterHub checks every 5 s that the proxy it started still runs; when it does not, the hub
starts it again and adds every route back (the hub's own, each running workspace's, each
service's). People get back in with the sessions they had: nobody logs in again and nobody
restarts anything. The workspace itself never noticed: its kernel and files are as before.
"""

from __future__ import annotations

import pytest
import requests

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import PROJECT, Site
from tests.faults.conftest import ready
from tests.faults.processes import alive, kill, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_hub_restarts_its_proxy_and_every_route_comes_back(
    docker_site: Site, researcher: HubUser
) -> None:
    site = docker_site
    user = ready(site, researcher)
    pid_file = site.settings.hub_dir / "proxy.pid"
    proxy = int(pid_file.read_text())
    assert alive(proxy)
    user.execute(PROJECT, "x = open('/home/researcher/work/proxy.txt', 'w').write('kept')")

    kill(proxy)
    with pytest.raises(requests.ConnectionError):
        user.get("/hub/home")

    def back() -> bool:
        try:
            return user.get(f"/user/{user.username}/{PROJECT}/api/status").status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(back, 30, "the workspace to answer through the proxy again", every=0.5)
    restarted = int(pid_file.read_text())
    assert restarted != proxy and alive(restarted)

    home = user.get("/hub/home", allow_redirects=False)
    assert home.status_code == 200  # the same session: no new login
    review = user.get("/services/tre-review/health")
    assert review.status_code == 200 and review.json() == {"ok": True}
    out = user.execute(PROJECT, "print(open('/home/researcher/work/proxy.txt').read())")
    assert out.strip() == "kept"
    log = (site.settings.logs_dir / "jupyterhub.log").read_text()
    assert "Proxy stopped with exit code" in log
