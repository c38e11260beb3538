"""A whole demo site for end-to-end tests: policy dated for today, data really
ingested, the real OIDC provider, JupyterHub, its proxy and its services."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors

from tests.e2e.hubclient import HubUser, message_of
from tests.support import DEMO_POLICY
from tre.audit import SITE_CHAIN, EventKind, open_store
from tre.ingest import granted_versions, ingest_version
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import (
    AuditSettings,
    HubSettings,
    MirrorSettings,
    OidcSettings,
    PublishSettings,
    ReviewSettings,
    Settings,
)
from tre.stack import Stack

PROJECT = "gbm-linkage"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_hub(**fields: Any) -> HubSettings:
    """Hub settings on free loopback ports (public, hub, proxy API), with `fields` besides."""
    return HubSettings(
        public_url=f"http://127.0.0.1:{free_port()}",
        hub_port=free_port(),
        proxy_api_port=free_port(),
        **fields,
    )


def policy_for_today(target: Path, today: date) -> None:
    """The demo policy with dates moved so that it holds on the day the test runs:
    gbm-linkage current; hf-outcomes expired yesterday."""
    shutil.copytree(DEMO_POLICY, target)
    permits = target / "permits.yaml"
    text = permits.read_text(encoding="utf-8")
    blocks = text.split("\n  - id: ")
    gbm = (today - timedelta(days=60), today - timedelta(days=30), today + timedelta(days=365))
    hf = (today - timedelta(days=400), today - timedelta(days=390), today - timedelta(days=1))
    for i, (issued, start, expiry) in ((1, gbm), (2, hf)):
        block = blocks[i]
        block = re.sub(r"issued: \S+", f"issued: {issued}", block)
        block = re.sub(r"start: \S+", f"start: {start}", block)
        block = re.sub(r"expiry: \S+", f"expiry: {expiry}", block)
        blocks[i] = block
    permits.write_text("\n  - id: ".join(blocks), encoding="utf-8")


@dataclass
class Site:
    settings: Settings
    stack: Stack
    policy_dir: Path

    @property
    def url(self) -> str:
        return self.settings.hub.public_url

    def user(self, name: str) -> HubUser:
        user = HubUser(self.url, name)
        page = user.log_in()
        assert page.status_code == 200 and page.url.endswith("/hub/home"), message_of(page)[:300]
        return user

    def audit(self) -> list[tuple[EventKind, str, str | None]]:
        """(kind, actor, project) of every audit record, oldest first."""
        records = open_store(self.settings).show()
        return [(r.kind, r.actor, None if r.project == SITE_CHAIN else r.project) for r in records]


def site_settings(
    root: Path,
    image: str,
    *,
    mirror: bool = False,
    publish: bool = False,
    backend: Literal["docker", "swarm"] = "docker",
) -> Settings:
    """`mirror`: run the package mirror (it fetches the upstream index's list of names
    first); the tests that do not install packages leave it off. `publish`: run the
    summaries service (its Voila container); only the publication tests need it.
    `backend`: what starts workspaces (`swarm` needs an engine prepared as in
    tests/e2e/test_swarm.py)."""
    return Settings(
        policy_dir=root / "policy",
        var_dir=root / "var",
        hub=loopback_hub(image=image, mem_limit="2G", permit_check_interval=5, backend=backend),
        review=ReviewSettings(port=free_port()),
        audit=AuditSettings(port=free_port()),
        mirror=MirrorSettings(enabled=mirror, port=free_port()),
        publish=PublishSettings(enabled=publish, refresh_seconds=5),
        oidc=OidcSettings(demo_idp_port=free_port()),
    )


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


@contextmanager
def running_site(
    root: Path,
    demo_silos: Path,
    image: str,
    *,
    mirror: bool = False,
    publish: bool = False,
    backend: Literal["docker", "swarm"] = "docker",
) -> Iterator[Site]:
    """Start a site under `root` with gbm-linkage's datasets ingested; stop it after."""
    today = date.today()
    settings = site_settings(root, image, mirror=mirror, publish=publish, backend=backend)
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
        if backend == "swarm":
            for service in client.services.list(filters={"label": "org.jupyter-tre.project"}):
                service.remove()
        # This site's workspaces only: other sites may be running on the same engine.
        for container in containers_of(settings):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container.id, force=True)
        for container in client.containers.list(
            all=True, filters={"label": "org.jupyter-tre.service"}
        ):
            container.remove(force=True)
