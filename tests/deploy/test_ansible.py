"""The Ansible deployment, run against this machine: lint, a site set up by `site.yml`
(connection local), a person logging in through the TLS proxy and the real OIDC provider,
a workspace spawned and a cell run in it, the hub's state in PostgreSQL, the hub's internal
ports closed to the outside, projects moved through Ansible, and a second run that changes
nothing. `teardown.yml` leaves the machine as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.deploy.site import (
    ANSIBLE,
    BIN,
    DeployedSite,
    Run,
    TlsHubUser,
    alices_workspaces,
    deploy_site,
)
from tests.e2e.hubclient import error_of
from tests.e2e.netns import OutsideHost, require_root_tools
from tests.e2e.sites import PROJECT

LINT_TIMEOUT = 300


@pytest.mark.slow
@pytest.mark.timeout(LINT_TIMEOUT + 60)
def test_the_playbooks_pass_ansible_lint_in_the_production_profile() -> None:
    done = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production"],
        cwd=ANSIBLE,
        env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in done.stderr + done.stdout


@pytest.fixture(scope="module")
def site(demo_silos: Path, workspace_image: str) -> Iterator[DeployedSite]:
    with deploy_site(demo_silos, workspace_image) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def alice(site: DeployedSite) -> TlsHubUser:
    user = site.user("alice")
    for _ in range(3):
        put_back_firewall_rules(site)
        response = user.spawn(PROJECT)
        if "workspace network is not protected" not in error_of(response):
            break
    assert response.status_code in (200, 302), error_of(response) + "\n" + site.log_tail()
    user.wait_ready(PROJECT)
    return user


def put_back_firewall_rules(site: DeployedSite) -> None:
    """One site per host (docs/how-to/run-the-hub.md): the project-network rules are
    host-global, and a test site started elsewhere since the playbook ran may have put its
    own ports there (the spawner then refuses, failing closed). Put this site's back, as its
    hub does at every start."""
    site.tre("hub", "firewall")


def psql(site: DeployedSite, database: str, query: str) -> list[str]:
    done = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-p",
            str(site.variables["tre_postgres_port"]),
            "-d",
            database,
            "-tAc",
            query,
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_researcher_logs_in_through_tls_and_runs_code_in_a_workspace(
    site: DeployedSite, alice: TlsHubUser
) -> None:
    assert site.first_run.recap.get("failed") == 0, site.first_run.output[-3000:]
    # The hub reports the server ready, behind TLS, and its container carries the project.
    info = alice.server(PROJECT)
    assert info is not None and info["ready"], info
    containers = alices_workspaces()
    assert len(containers) == 1, containers
    container = containers[0]
    assert container.status == "running"
    assert container.image.tags and site.variables["tre_workspace_image"] in container.image.tags
    # A cell through the kernel websocket (wss through nginx, the certificate verified).
    assert alice.execute(PROJECT, "import os; print(sorted(os.listdir('/data'))[0])").strip()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tls_is_verified_against_the_site_certificate_and_plain_http_is_redirected(
    site: DeployedSite,
) -> None:
    port = site.variables["tre_https_port"]
    session = requests.Session()
    session.trust_env = False
    # The self-signed certificate verifies only against itself: a client trusting the
    # system's CAs refuses it.
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://127.0.0.1:{port}/hub/api/", timeout=30)
    ok = session.get(f"https://127.0.0.1:{port}/hub/api/", verify=str(site.certificate), timeout=30)
    assert ok.status_code == 200 and "version" in ok.json()
    assert ok.headers["Strict-Transport-Security"].startswith("max-age=")
    # Plain HTTP on the TLS port never reaches the hub: it is sent to HTTPS.
    plain = session.get(f"http://127.0.0.1:{port}/hub/login", allow_redirects=False, timeout=30)
    assert plain.status_code == 301, plain.text[:300]
    assert plain.headers["Location"] == f"https://127.0.0.1:{port}/hub/login"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_hub_audit_and_review_keep_their_state_in_the_sites_postgresql_cluster(
    site: DeployedSite, alice: TlsHubUser
) -> None:
    settings = site.settings
    assert settings.hub.db_url and settings.hub.db_url.startswith("postgresql://")
    assert f":{site.variables['tre_postgres_port']}/" in settings.hub.db_url
    databases = psql(site, "postgres", "SELECT datname FROM pg_database")
    assert {"tre_hub", "tre_audit", "tre_review"} <= set(databases)
    tables = psql(site, "tre_hub", "SELECT tablename FROM pg_tables WHERE schemaname='public'")
    assert {"users", "servers", "spawners", "oauth_clients"} <= set(tables)
    assert psql(site, "tre_hub", "SELECT name FROM users WHERE name = 'alice'") == ["alice"]
    assert not (settings.db_dir / "jupyterhub.sqlite").exists()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_only_the_tls_port_is_reachable_from_outside_the_host(
    site: DeployedSite, tmp_path: Path
) -> None:
    """From a stand-in outside host (a network namespace behind a veth pair), the TLS port
    answers and the hub's own ports (API, proxy, services, demo provider, PostgreSQL) are
    refused, although they listen on every address."""
    problem = require_root_tools()
    if problem:
        pytest.skip(f"SKIPPED LOUDLY: {problem}")
    v = site.variables
    internal = {
        name: int(v[name])
        for name in ("tre_hub_api_port", "tre_hub_bind_port", "tre_demo_idp_port")
    }
    listening = {name: port for name, port in internal.items() if _listens_on_any(port)}
    assert "tre_hub_api_port" in listening, "the hub API should listen on every address"
    with OutsideHost(tmp_path, dns=False, metadata=False) as outside:
        reach = {
            name: _connect_from(outside, str(outside.host_addr), port)
            for name, port in {"https": int(v["tre_https_port"]), **listening}.items()
        }
    assert reach["https"] == "connected", reach
    for name in listening:
        assert reach[name] == "refused", reach


def _listens_on_any(port: int) -> bool:
    done = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return any(
        line.split()[3].startswith(("0.0.0.0:", "*:", "[::]:")) for line in done.stdout.splitlines()
    )


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("failed: " + type(e).__name__)
"""


def _connect_from(outside: OutsideHost, host: str, port: int) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", outside.namespace, sys.executable, "-c", CONNECT, host, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_projects_move_through_ansible(site: DeployedSite) -> None:
    def states() -> dict[str, str | None]:
        loaded: dict[str, str | None] = json.loads(site.tre("project", "status", "--json"))
        return loaded

    def projects_run(wanted: dict[str, str]) -> Run:
        return site.playbook(
            "site.yml", "--tags", "projects", "-e", json.dumps({"tre_projects": wanted})
        )

    assert states() == {"gbm-linkage": "provisioned", "hf-outcomes": "provisioned"}
    moved = projects_run({"hf-outcomes": "suspended"})
    assert moved.returncode == 0, moved.output[-3000:]
    assert [t for t in moved.changed_tasks if "Suspend projects" in t], moved.changed_tasks
    assert states() == {"gbm-linkage": "provisioned", "hf-outcomes": "suspended"}
    # Back to the default (provisioned): a suspended project is resumed.
    resumed = projects_run({})
    assert [t for t in resumed.changed_tasks if "Provision" in t], resumed.changed_tasks
    assert states() == {"gbm-linkage": "provisioned", "hf-outcomes": "provisioned"}
    unknown = projects_run({"no-such": "provisioned"})
    assert unknown.returncode != 0
    assert "tre_projects names no-such" in unknown.output
    wrong = projects_run({"hf-outcomes": "paused"})
    assert wrong.returncode != 0
    assert "paused is not provisioned, suspended or archived" in wrong.output


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_second_run_changes_nothing(site: DeployedSite) -> None:
    assert site.first_run.recap["changed"] > 0
    put_back_firewall_rules(site)
    before = site.daemon_pids()
    again = site.playbook("site.yml")
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, "\n".join(again.changed_tasks)
    assert again.recap["failed"] == 0
    # Nothing was restarted: the hub, the demo provider and nginx are the same processes.
    assert site.daemon_pids() == before
    assert all(pid > 0 for pid in before.values()), before
