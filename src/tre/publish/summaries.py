"""The summaries service: Voila, in a container of its own, over the published folder only.

The hub runs `python -m tre.publish.summaries` as the managed service `tre-summaries`.
This process stays on the host: it builds the published folder from released outputs
(`tre.publish.build`) now and every `publish.refresh_seconds`, and keeps one container
running Voila on the summary notebooks. The container:

- mounts the summary notebooks, the published folder and the login module, all
  read-only, and nothing else: no dataset, no project workspace, no review store;
- runs as the unprivileged image user with every capability dropped, a read-only root
  file system and the workspaces' limits;
- sits alone on an internal network with a fixed subnet (the proxy's route to it is
  known when the hub starts), whose bridge the host firewall confines like a project's:
  it reaches the hub's API on its gateway for logins and nothing outside the host;
- runs Voila on its own (never the Jupyter server): its kernels accept only widget
  (comm) messages, so a visitor cannot run code; JupyterHub's login lets in only those
  holding `access:services!service=tre-summaries`.

If the firewall rules are not in place the container is not started (fail closed). The
process exits when the container does; the hub then restarts the service.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from tre.hub.config import REPO, firewall_rules
from tre.hub.firewall import FirewallError, check_rules
from tre.hub.networks import ProjectNetwork, ensure_project_network
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.hub.spawner import hardening
from tre.lifeline import end_with_parent
from tre.policy import load_policy
from tre.settings import Settings, load_settings

from .build import PublishError, build_publication
from .exports import site_exports

log = logging.getLogger("tre.publish.summaries")

SERVICE_NAME = "tre-summaries"
NETWORK_ID = "tre-publish"
"""The summaries network's id, in the project networks' name space (a reserved project id)."""
CONTAINER_NAME = "tre-summaries"
SERVICE_LABEL = "org.jupyter-tre.service"

NOTEBOOKS_IN_CONTAINER = Path("/srv/summaries")
PUBLISHED_IN_CONTAINER = Path("/srv/publish")
AUTH_IN_CONTAINER = Path("/opt/tre-publish")
AUTH_MODULE = Path(__file__).resolve().parent / "container" / "tre_voila_auth.py"

NEVER_MATCHES = "(?!)"
"""A regular expression no path matches: Voila's own file route serves nothing."""


class SummariesError(RuntimeError):
    """The summaries container cannot be started as it must be; nothing was started."""


def notebooks_dir(settings: Settings) -> Path:
    return settings.publish.notebooks_dir or REPO / "notebooks" / "summaries"


def service_url(settings: Settings) -> str:
    """Where the proxy sends /services/tre-summaries/: the container's fixed address."""
    return f"http://{settings.publish.address}:{settings.publish.port}"


def hub_api_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """The hub's API as the container reaches it: on its network's gateway."""
    given = urlsplit(environ.get("JUPYTERHUB_API_URL") or "http://127.0.0.1/hub/api")
    netloc = f"{settings.publish.gateway}:{settings.hub.hub_port}"
    return urlunsplit((given.scheme, netloc, given.path, "", ""))


def container_env(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The hub's service variables (token, OAuth client, prefix), the API on the gateway."""
    env = {k: v for k, v in environ.items() if k.startswith("JUPYTERHUB_")}
    missing = [
        k
        for k in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_SERVICE_PREFIX")
        if not env.get(k)
    ]
    if missing:
        raise SummariesError(
            f"{', '.join(missing)} not set: run this as the hub's managed service "
            f"{SERVICE_NAME!r}, which sets them"
        )
    env["JUPYTERHUB_API_URL"] = hub_api_url(settings, environ)
    return {
        **env,
        "PYTHONPATH": str(AUTH_IN_CONTAINER),
        "PYTHONNOUSERSITE": "1",
        "HOME": "/tmp/home",  # noqa: S108 - tmpfs in the container
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",  # noqa: S108
        "IPYTHONDIR": "/tmp/ipython",  # noqa: S108
        "MPLCONFIGDIR": "/tmp/matplotlib",  # noqa: S108
        "XDG_CACHE_HOME": "/tmp/cache",  # noqa: S108
        "TRE_PUBLISHED": str(PUBLISHED_IN_CONTAINER / "current"),
    }


def voila_command(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{SERVICE_NAME}/"
    return [
        "voila",
        str(NOTEBOOKS_IN_CONTAINER),
        "--no-browser",
        "--Voila.ip=0.0.0.0",
        f"--Voila.port={settings.publish.port}",
        f"--Voila.base_url={prefix}",
        # JupyterHub's login; `auto_token` keeps Voila from setting a token of its own.
        "--Voila.identity_provider_class=tre_voila_auth.SummariesIdentityProvider",
        "--Voila.authorizer_class=jupyterhub.singleuser.extension.JupyterHubAuthorizer",
        "--Voila.auto_token=True",
        "--VoilaConfiguration.file_allowlist",
        NEVER_MATCHES,
        "--VoilaConfiguration.show_tracebacks=False",
        "--MappingKernelManager.cull_idle_timeout=600",
        "--MappingKernelManager.cull_interval=60",
    ]


def container_spec(
    settings: Settings, environ: Mapping[str, str], network: ProjectNetwork
) -> dict[str, Any]:
    """`docker.containers.run` keyword arguments for the summaries container."""
    notebooks = notebooks_dir(settings)
    if not any(notebooks.glob("*.ipynb")):
        raise SummariesError(f"{notebooks}: no summary notebooks (*.ipynb) to serve")
    if not AUTH_MODULE.is_file():
        raise SummariesError(f"{AUTH_MODULE}: the login module is missing from jupyter-tre")
    publish = settings.publish
    return {
        "image": settings.hub.image,
        "name": CONTAINER_NAME,
        "command": voila_command(settings, environ),
        "environment": container_env(settings, environ),
        "user": f"{WORKSPACE_UID}:{WORKSPACE_GID}",
        "working_dir": str(NOTEBOOKS_IN_CONTAINER),
        "labels": {SERVICE_LABEL: SERVICE_NAME},
        "detach": True,
        "network": network.name,
        "networking_config": {
            network.name: docker.types.EndpointConfig(
                version="1.44", ipv4_address=str(publish.address)
            )
        },
        "volumes": {
            str(notebooks.resolve()): {"bind": str(NOTEBOOKS_IN_CONTAINER), "mode": "ro"},
            str(settings.publish_dir.resolve()): {
                "bind": str(PUBLISHED_IN_CONTAINER),
                "mode": "ro",
            },
            str(AUTH_MODULE): {
                "bind": str(AUTH_IN_CONTAINER / AUTH_MODULE.name),
                "mode": "ro",
            },
        },
        "mem_limit": publish.mem_limit.lower(),
        "nano_cpus": int(publish.cpu_limit * 1e9),
        "dns": [str(network.gateway)],
        "dns_opt": ["timeout:1", "attempts:1"],
        **hardening(settings),
    }


def publish_now(settings: Settings, today: date | None = None) -> Path | None:
    """Rebuild the published folder; on failure keep the current one and say why."""
    today = today or date.today()
    try:
        policy = load_policy(settings.policy_dir, today)
        return build_publication(
            settings, policy, today=today, exports=site_exports(settings, policy, today)
        )
    except PublishError as exc:
        log.error("publication not rebuilt: %s", exc)
    except Exception:
        log.exception("publication not rebuilt")
    return None


def start_container(
    client: docker.DockerClient, settings: Settings, environ: Mapping[str, str]
) -> Container:
    """Start the summaries container (replacing a leftover one); refuse without a firewall."""
    try:
        check_rules(firewall_rules(settings))
    except FirewallError as exc:
        raise SummariesError(f"host firewall rules are not in place: {exc}") from exc
    network = ensure_project_network(client, NETWORK_ID, settings.publish.subnet)
    spec = container_spec(settings, environ, network)
    remove_container(client)
    container: Container = client.containers.run(**spec)
    return container


def remove_container(client: docker.DockerClient) -> None:
    try:
        old = client.containers.get(CONTAINER_NAME)
    except docker.errors.NotFound:
        return
    if old.labels.get(SERVICE_LABEL) != SERVICE_NAME:
        raise SummariesError(
            f"a container named {CONTAINER_NAME!r} exists that jupyter-tre did not start; "
            "remove it after checking what it is"
        )
    old.remove(force=True)


def serve(settings: Settings, environ: Mapping[str, str]) -> int:
    """Publish, run the container, republish every `refresh_seconds`; the exit status."""
    settings.publish_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    publish_now(settings)
    client = docker.from_env()
    container = start_container(client, settings, environ)
    log.info("summaries container %s at %s", container.short_id, service_url(settings))
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the summaries container", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_build = time.monotonic() + settings.publish.refresh_seconds
    try:
        while not stopping.wait(1.0):
            container.reload()
            if container.status not in ("created", "running"):
                logs = container.logs(tail=20).decode("utf-8", "replace")
                log.error("summaries container stopped (%s):\n%s", container.status, logs)
                return 1
            if time.monotonic() >= next_build:
                publish_now(settings)
                next_build = time.monotonic() + settings.publish.refresh_seconds
        return 0
    finally:
        try:
            container.remove(force=True)
        except docker.errors.DockerException as exc:
            log.warning("could not remove the summaries container: %s", exc)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    end_with_parent()  # a killed hub's restart starts its own
    settings = load_settings()
    try:
        return serve(settings, os.environ)
    except SummariesError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
