"""A real JupyterHub running the site's own configuration, with two stand-ins.

The hub is `tre.hub.configure` as a site runs it; only the authenticator (JupyterHub's
`dummy`, instead of the OIDC provider) and the spawner (`simple`, running a small
HTTP server instead of a Docker workspace) are swapped. The stand-in server writes the
JUPYTERHUB_API_TOKEN the hub gave it where the test can read it: that token is what a
workspace sends to the hub's services, so the services are tested with the real thing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.sites import free_port, loopback_hub
from tests.support import DEMO_POLICY
from tre.hub.config import PROXY_COMMAND, settings_file_for
from tre.settings import OidcSettings, Settings

SERVER_STANDIN = '''
"""Stands in for jupyterhub-singleuser: answers the hub, hands its token to the test."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

name = f"{os.environ['JUPYTERHUB_USER']}--{os.environ['JUPYTERHUB_SERVER_NAME']}"
token_file = Path(os.environ["STANDIN_TOKEN_DIR"]) / name
token_file.write_text(os.environ["JUPYTERHUB_API_TOKEN"])
token_file.chmod(0o600)
url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


ThreadingHTTPServer((url.hostname, url.port), Handler).serve_forever()
'''


@dataclass(frozen=True)
class HubPlan:
    """What a test keeps of the site's hub configuration and what it adds.

    The site's services named in `keep_services` stay (as managed services), with the
    roles that name only them; roles for people (no services) always stay. A `test-admin`
    service with `admin_scopes` drives the hub's API for the test.
    """

    keep_services: frozenset[str] = frozenset()
    extra_services: tuple[dict[str, Any], ...] = ()
    extra_roles: tuple[dict[str, Any], ...] = ()
    groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    admin_scopes: tuple[str, ...] = ("admin:users", "admin:servers", "list:users")


def hub_config(settings_file: Path, standin: Path, tokens: Path, admin: str, plan: HubPlan) -> str:
    services = [{"name": "test-admin", "api_token": admin}, *plan.extra_services]
    roles = [
        {"name": "test-admin", "scopes": list(plan.admin_scopes), "services": ["test-admin"]},
        *plan.extra_roles,
    ]
    config = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        from tre.hub.config import configure
        from tre.settings import load_settings

        c = get_config()  # noqa: F821
        configure(c, load_settings(Path({str(settings_file)!r})))
        # The test's stand-ins for the OIDC provider and DockerSpawner.
        c.JupyterHub.authenticator_class = "dummy"
        c.JupyterHub.spawner_class = "simple"
        c.Spawner.cmd = [sys.executable, {str(standin)!r}]
        c.Spawner.environment = {{"STANDIN_TOKEN_DIR": {str(tokens)!r}}}
        keep = {sorted(plan.keep_services)!r}
        c.JupyterHub.services = [
            s for s in c.JupyterHub.services if s["name"] in keep
        ] + {services!r}
        c.JupyterHub.load_roles = [
            r for r in c.JupyterHub.load_roles if set(r.get("services", ())) <= set(keep)
        ] + {roles!r}
        """
    )
    if plan.groups:
        config += f"c.JupyterHub.load_groups = {plan.groups!r}\n"
    return config


def site_settings(root: Path, **sections: Any) -> Settings:
    """A site under `root` with a copy of the demo policy and free loopback ports."""
    policy_dir = root / "policy"
    shutil.copytree(DEMO_POLICY, policy_dir)
    return Settings(
        policy_dir=policy_dir,
        var_dir=root / "var",
        hub=loopback_hub(),
        oidc=OidcSettings(demo_idp_port=free_port()),
        **sections,
    )


@dataclass
class StandinHub:
    settings: Settings
    tokens: Path
    admin_token: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def public(self) -> str:
        return self.settings.hub.public_url

    @property
    def hub_api(self) -> str:
        return f"http://127.0.0.1:{self.settings.hub.hub_port}/hub/api"

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return requests.request(method, self.hub_api + path, headers=headers, timeout=60, **kwargs)

    def spawn(self, user: str, server: str, project: str) -> str:
        """Start user/server for `project` through the hub; return the server's token."""
        self.admin("POST", f"/users/{user}")  # 201, or 409 when the user exists already
        started = self.admin("POST", f"/users/{user}/servers/{server}", json={"project": project})
        assert started.status_code in {201, 202}, started.text
        token_file = self.tokens / f"{user}--{server}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = self.admin("GET", f"/users/{user}").json()
            if model["servers"].get(server, {}).get("ready") and token_file.exists():
                return token_file.read_text()
            time.sleep(0.2)
        raise AssertionError(f"server {user}/{server} did not start: {model}\n{self.tail()}")

    def wait_for(self, url: str, *, ok: int = 500) -> None:
        """Until `url` answers below `ok` (the proxy routes a service only once it is up)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the hub exited: {self.tail()}")
            try:
                if requests.get(url, timeout=2).status_code < ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} did not answer: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def standin_hub(
    root: Path, settings: Settings, plan: HubPlan, admin_token: str
) -> Iterator[StandinHub]:
    """Run the hub for `settings` under `root` until the block ends (its API answering)."""
    if not PROXY_COMMAND.exists():
        pytest.skip(f"SKIPPED LOUDLY: configurable-http-proxy is not installed ({PROXY_COMMAND})")
    settings.hub_dir.mkdir(parents=True, mode=0o700)
    settings.logs_dir.mkdir(parents=True, mode=0o700)
    tokens = root / "tokens"
    tokens.mkdir(mode=0o700)
    standin = root / "standin.py"
    standin.write_text(textwrap.dedent(SERVER_STANDIN))
    config = root / "jupyterhub_config.py"
    config.write_text(hub_config(settings_file_for(settings), standin, tokens, admin_token, plan))
    log = settings.logs_dir / "jupyterhub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": ""},
        )
    hub = StandinHub(settings, tokens, admin_token, process, log)
    try:
        hub.wait_for(hub.hub_api)
        yield hub
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        print(log.read_text(errors="replace")[-5000:])  # shown by pytest when a test failed
