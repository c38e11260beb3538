"""A site deployed on this machine by the Ansible playbook, with names and ports of its own.

`deploy_site` prepares the site folder (policy dated for today, the demo silos, gbm-linkage's
datasets ingested), writes the playbook's variables, runs `ansible/site.yml` against this
machine (connection local) and, afterwards, `ansible/teardown.yml`, so the machine is left
as it was: no units, cron entries, nginx site, edge chain or PostgreSQL cluster of the test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.models.containers import Container
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.e2e.hubclient import V1, HubUser, KernelChannel, message_of
from tests.e2e.sites import PROJECT, free_port, policy_for_today
from tre.ingest import granted_versions, ingest_version
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent

TOOLS = ("start-stop-daemon", "pg_createcluster", "pg_ctlcluster", "nginx", "openssl", "iptables")


def unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the deployment test must run here)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def check_host() -> None:
    """Root, the tools the playbook calls, and every package it installs already there (the
    test never lets apt reach a mirror)."""
    if os.geteuid() != 0:
        unavailable("the deployment test runs the playbook as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    defaults = yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text(encoding="utf-8"))
    for package in defaults["tre_packages"]:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if "install ok installed" not in status.stdout:
            missing.append(package)
    if missing:
        unavailable(
            f"missing on this host: {', '.join(missing)} (apt-get install them; the test does "
            "not let the playbook download anything)"
        )


@dataclass
class Run:
    """One ansible-playbook run: its exit status, output, recap and the tasks that changed."""

    returncode: int
    output: str
    seconds: float = 0.0
    recap: dict[str, int] = field(default_factory=dict)
    changed_tasks: list[str] = field(default_factory=list)


def parse_run(returncode: int, output: str) -> Run:
    """Read the default callback's output: `changed:` lines under their TASK header, and the
    PLAY RECAP counts for localhost."""
    run = Run(returncode, output)
    task = "?"
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \*+", line)
        if header:
            task = header[1]
        elif line.startswith("changed:"):
            run.changed_tasks.append(f"{task}: {line}")
        recap = re.match(r"^localhost\s*:\s*(.*)$", line)
        if recap:
            run.recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap[1])}
    return run


@dataclass
class DeployedSite:
    root: Path
    variables: dict[str, Any]
    settings: Settings
    first_run: Run

    @property
    def url(self) -> str:
        return str(self.variables["tre_public_url"])

    @property
    def certificate(self) -> Path:
        return self.root / "tls" / "self-signed.crt"

    def log_tail(self, name: str = "hub", lines: int = 40) -> str:
        """The end of a service's log (the no-systemd fallback writes var/logs/<name>.log)."""
        path = self.root / "var" / "logs" / f"{name}.log"
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or f"(no {path})"

    def daemon_pids(self) -> dict[str, int]:
        """The running hub's, demo provider's and nginx's process ids (0: not running)."""
        pidfiles = {
            "hub": self.root / "run" / "hub.pid",
            "idp": self.root / "run" / "idp.pid",
            "nginx": Path("/run/nginx.pid"),
        }
        return {
            name: int(path.read_text(encoding="utf-8")) if _running(str(path)) else 0
            for name, path in pidfiles.items()
        }

    def tre(self, *args: str) -> str:
        """Run `tre` with the site's settings; its standard output."""
        done = subprocess.run(
            [str(BIN / "tre"), "--settings", str(self.root / "etc" / "settings.yml"), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout

    def playbook(self, name: str = "site.yml", *extra: str) -> Run:
        return run_playbook(self.root, name, *extra)

    def user(self, name: str) -> TlsHubUser:
        user = TlsHubUser(self.url, name)
        user.session.verify = str(self.certificate)
        page = user.log_in()
        assert page.status_code == 200 and page.url.endswith("/hub/home"), message_of(page)[:300]
        return user


class TlsHubUser(HubUser):
    """A person at the hub behind the TLS proxy: kernel websockets over wss, the site's
    certificate verified."""

    def channel(  # type: ignore[override]
        self,
        server: str,
        kernel_id: str,
        protocol: str = "legacy",
        headers: dict[str, str] | None = None,
    ) -> Any:
        return _wss_channel(self, server, kernel_id, protocol, headers)


@contextmanager
def _wss_channel(
    user: TlsHubUser,
    server: str,
    kernel_id: str,
    protocol: str,
    headers: dict[str, str] | None,
) -> Iterator[KernelChannel]:
    base = user.public_url.replace("https://", "wss://").rstrip("/")
    url = f"{base}/user/{user.username}/{server}/api/kernels/{kernel_id}/channels"
    if headers is None:
        headers = {"Cookie": "; ".join(f"{c.name}={c.value}" for c in user.session.cookies)}
    context = ssl.create_default_context(cafile=str(user.session.verify))
    subprotocols = [Subprotocol(V1)] if protocol == V1 else None
    with connect(
        url, additional_headers=headers, subprotocols=subprotocols, ssl=context, open_timeout=30
    ) as ws:
        yield KernelChannel(ws, protocol, user.username)


def alices_workspaces() -> list[Container]:
    """Alice's gbm-linkage containers (the only workspaces the deployment test starts)."""
    found = docker.from_env().containers.list(
        all=True, filters={"label": f"org.jupyter-tre.project={PROJECT}"}
    )
    return [c for c in found if (c.name or "").startswith("tre-alice--")]


def run_playbook(root: Path, name: str, *extra: str) -> Run:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_HOME": str(root / "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DISPLAY_OK_HOSTS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "default",
    }
    started = time.monotonic()
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-c",
            "local",
            "-i",
            "localhost,",
            str(ANSIBLE / name),
            "-e",
            f"@{root / 'vars.json'}",
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    run = parse_run(done.returncode, done.stdout + done.stderr)
    run.seconds = time.monotonic() - started
    print(f"{name}: {run.seconds:.0f} s, {run.recap}")  # shown with -rA / on failure
    return run


def _running(pidfile: str) -> bool:
    status = subprocess.run(
        ["start-stop-daemon", "--status", "--pidfile", pidfile], capture_output=True, check=False
    )
    return status.returncode == 0


def prepare_site(root: Path, demo_silos: Path, image: str) -> dict[str, Any]:
    """The site folder before Ansible: the policy, the silos, the key, gbm-linkage's data.
    Returns the playbook's variables: unique names and free ports for everything."""
    today = date.today()
    policy_for_today(root / "policy", today)
    # The playbook validates the policy strictly: hf-outcomes' permit, expired yesterday, is
    # archived as an administrator would.
    permits = root / "policy" / "permits.yaml"
    text = permits.read_text(encoding="utf-8")
    line = "    project: hf-outcomes\n"
    assert text.count(line) == 1
    permits.write_text(text.replace(line, line + "    archived: true\n"), encoding="utf-8")
    var = root / "var"
    var.mkdir(mode=0o700)
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    tag = secrets.token_hex(4)
    https_port = free_port()
    variables: dict[str, Any] = {
        "ansible_python_interpreter": sys.executable,
        "tre_root": str(root),
        "tre_source_dir": str(REPO),
        "tre_venv": sys.prefix,
        "tre_service_prefix": f"tre-test-{tag}",
        "tre_server_name": "localhost",
        "tre_https_port": https_port,
        "tre_public_url": f"https://127.0.0.1:{https_port}",
        "tre_http_redirect_port": None,
        "tre_tls_self_signed_names": ["IP:127.0.0.1", "DNS:localhost"],
        "tre_hub_bind_port": free_port(),
        "tre_hub_api_port": free_port(),
        "tre_proxy_api_port": free_port(),
        "tre_audit_port": free_port(),
        "tre_review_port": free_port(),
        "tre_mirror_port": free_port(),
        "tre_demo_idp_port": free_port(),
        "tre_postgres_cluster": f"tre_test_{tag}",
        "tre_postgres_port": free_port(),
        "tre_workspace_image": image,
        "tre_image_build": False,
        # The mirror would fetch the upstream index, the summaries service needs a fixed
        # subnet: other tests have them.
        "tre_mirror_enabled": False,
        "tre_publish_enabled": False,
        "tre_demo_idp": True,
        "tre_nginx_remove_default_site": False,
        "tre_apt_update_cache": False,
        "tre_firewall_edge_chain": f"TT{tag.upper()}-EDGE",
        "tre_settings_overrides": {"hub": {"mem_limit": "2G", "permit_check_interval": 5}},
        "tre_teardown_stop_nginx": not _running("/run/nginx.pid"),
        "tre_teardown_stop_cron": not _running("/run/crond.pid"),
    }
    (root / "vars.json").write_text(json.dumps(variables, indent=2), encoding="utf-8")
    settings = Settings(policy_dir=root / "policy", var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(settings.policy_dir, today)
    for dataset, version, _ in granted_versions(settings, policy, PROJECT, today):
        ingest_version(settings, policy, PROJECT, dataset, version, today=today)
    return variables


@contextmanager
def deploy_site(demo_silos: Path, image: str) -> Iterator[DeployedSite]:
    """Run the playbook for a fresh site; tear it down (and the workspaces it ran) after."""
    check_host()
    # Not under pytest's tmp_path: the folders must be reachable for root-owned services only,
    # and the path short (unix sockets of the hub's services live under it).
    root = Path(tempfile.mkdtemp(prefix="tre-ansible-"))
    root.chmod(0o700)
    variables = prepare_site(root, demo_silos, image)
    try:
        first = run_playbook(root, "site.yml")
        settings_file = root / "etc" / "settings.yml"
        if first.returncode != 0:
            pytest.fail(f"site.yml failed:\n{first.output[-6000:]}", pytrace=False)
        from tre.settings import load_settings

        yield DeployedSite(root, variables, load_settings(settings_file), first)
    finally:
        teardown = run_playbook(root, "teardown.yml")
        for container in alices_workspaces():
            container.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)
        if teardown.returncode != 0:
            pytest.fail(f"teardown.yml failed:\n{teardown.output[-4000:]}", pytrace=False)
