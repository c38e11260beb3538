"""DockerSpawner for project workspaces: one container per person and project.

Every start asks the policy again (`check_spawn`), verifies the dataset folders
against their sealed manifests, and builds the container from the plan alone:
permitted versions read-only under /data, the project workspace read-write,
no capabilities, no new privileges, a read-only root, the project's internal
network and nothing else. Any failure refuses the start (fail closed).
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import time
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import docker
from dockerspawner import DockerSpawner
from jupyterhub.httpclient import fetch
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Float, HasTraits, Unicode

from tre.audit import AuditEvent, EventKind, can_name_chain, open_store
from tre.policy import load_policy
from tre.resources import project_resources_dir
from tre.settings import Settings, load_settings

from .config import firewall_rules
from .datasets import check_plan_datasets
from .firewall import FirewallError, check_rules
from .measure import peak_memory
from .networks import ProjectNetworkError, ensure_project_network
from .plan import DATA_ROOT, WORK_DIR, SpawnPlan, SpawnRefused, check_spawn, spawnable
from .quota import WORKSPACE_GID, WORKSPACE_UID, QuotaError, prepare_workspace

CONTAINER_ENV = {
    "PYTHONNOUSERSITE": "1",
    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",  # noqa: S108 - tmpfs in the container
    "IPYTHONDIR": "/tmp/ipython",  # noqa: S108
    "MPLCONFIGDIR": "/tmp/matplotlib",  # noqa: S108
    "XDG_CACHE_HOME": "/tmp/cache",  # noqa: S108
    "NUMBA_CACHE_DIR": "/tmp/numba",  # noqa: S108
    "JUPYTERLAB_WORKSPACES_DIR": "/tmp/lab/workspaces",  # noqa: S108
    "JUPYTERLAB_SETTINGS_DIR": "/tmp/lab/user-settings",  # noqa: S108
    "JUPYTER_DATA_DIR": "/tmp/jupyter/data",  # noqa: S108 - else notebook_shim fails to load
}
"""The root filesystem is read-only: everything a session writes outside work/ is in /tmp."""


def hardening(settings: Settings) -> dict[str, Any]:
    """Docker host configuration every workspace gets, whatever the permit."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g,mode=1777"},  # noqa: S108
        "pids_limit": settings.hub.pids_limit,
        "privileged": False,
    }


class WorkspaceNetwork(Protocol):
    """The network a workspace joins, and the gateway where it reaches the hub side: a
    project bridge here, the swarm's gateway bridge for `tre.swarm`."""

    @property
    def name(self) -> str: ...

    @property
    def gateway(self) -> ipaddress.IPv4Address: ...

    def hub_url(self, port: int, scheme: str = "http") -> str: ...


def workspace_labels(plan: SpawnPlan) -> dict[str, str]:
    """Docker labels naming a workspace's project and permit (cleanup and audits use them)."""
    return {"org.jupyter-tre.project": plan.project, "org.jupyter-tre.permit": plan.permit}


def workspace_extension_env(
    settings: Settings, plan: SpawnPlan, network: WorkspaceNetwork
) -> dict[str, str]:
    """What the workspace's server extension (jupyter-tre-lab) needs: where the audit
    and output review services answer, the limits it enforces and whether terminals are
    allowed. The extension refuses every execution when the audit URL is missing (fail
    closed) and every release request when the review URL is."""
    return {
        "TRE_AUDIT_URL": network.hub_url(settings.audit.port),
        "TRE_REVIEW_URL": network.hub_url(settings.review.port),
        "TRE_AUDIT_TIMEOUT": str(settings.audit.confirm_timeout),
        "TRE_MAX_RECORD_BYTES": str(settings.audit.max_record_bytes),
        "TRE_MAX_CONTENT_BYTES": str(settings.hub.max_content_read_bytes),
        "TRE_DATA_ROOT": str(DATA_ROOT),
        "TRE_TERMINALS_ALLOWED": "1" if plan.terminals_allowed else "0",
    }


def pip_env(settings: Settings, network: WorkspaceNetwork, server_token: str) -> dict[str, str]:
    """pip in the workspace, pointed at the package mirror's front on the gateway with the
    server's own Hub token as the password (pip does not expand variables in the URL; the
    kernel already holds that token). Each install is downloaded, and audited, afresh."""
    if not settings.mirror.enabled:
        return {"PIP_NO_INDEX": "1"}
    base = network.hub_url(settings.mirror.port)
    scheme, host = base.split("://", 1)
    return {
        "PIP_INDEX_URL": f"{scheme}://tre:{server_token}@{host}/simple/",
        "PIP_TRUSTED_HOST": str(network.gateway),
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


RESOURCES_DIR = "/resources"
"""Where a project's read-only resources (`tre resources add`) appear in its workspaces."""


class Refusal(web.HTTPError):
    """A 403 whose message JupyterHub shows on its pages (as `jupyterhub_message`)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, message)
        self.jupyterhub_message = f"Not started: {message}"


def _escape(path: Path | str) -> str:
    """DockerSpawner formats volume strings with str.format: keep braces literal."""
    return str(path).replace("{", "{{").replace("}", "}}")


class SiteSpawner(HasTraits):
    """What every spawner of ours shares, whichever engine it drives: the site's settings
    and one audit path for its events. Mixed in before the engine's spawner class."""

    tre_settings_file = Unicode(
        "",
        config=True,
        help="jupyter-tre settings file (YAML or JSON); empty: defaults and environment overrides.",
    )

    _settings: Settings | None = None
    user: Any
    name: str

    @property
    def tre_settings(self) -> Settings:
        if self._settings is None:
            path = Path(self.tre_settings_file) if self.tre_settings_file else None
            self._settings = load_settings(path)
        return self._settings

    def _audit(
        self, kind: EventKind, project: str | None, permit: str | None, **detail: Any
    ) -> None:
        """Append this spawner's event to the audit log."""
        detail.pop("server", None)  # a field of its own now
        if project is not None and not can_name_chain(project):
            # A refused spawn may name any project: keep what was asked, in the site chain.
            detail["requested_project"], project = project, None
        open_store(self.tre_settings).append(
            AuditEvent(
                kind=kind,
                actor=self.user.name,
                project=project,
                permit=permit,
                server=self.name or None,
                detail=detail,
            )
        )


class ProjectSpawner(SiteSpawner, DockerSpawner):  # type: ignore[misc]
    """Starts the workspace of one project for one person, as the policy allows today."""

    ready_poll_interval = Float(
        0.1,
        config=True,
        help=(
            "Seconds between the spawner's own readiness probes. JupyterHub's probes back "
            "off exponentially (up to 5 s apart), which adds seconds to every start."
        ),
    )

    # -- the spawn form ----------------------------------------------------------

    async def options_form(self, spawner: DockerSpawner) -> str:
        policy = load_policy(self.tre_settings.policy_dir)
        choices = spawnable(policy, self.user.name, date.today())
        if not choices:
            return (
                "<p>No current permit names you for any project, so there is no workspace "
                "to start. Ask your principal investigator or the data manager.</p>"
            )
        options = []
        for project, permit in choices:
            selected = " selected" if project.id == self.name else ""
            label = (
                f"{project.title} — {permit.purpose.label}; permit {permit.id} "
                f"until {permit.expiry}"
            )
            options.append(
                f'<option value="{html.escape(project.id)}"{selected}>{html.escape(label)}</option>'
            )
        return (
            '<label for="tre-project">Project</label>'
            '<select class="form-control" name="project" id="tre-project">'
            + "".join(options)
            + "</select>"
            "<p>Only the datasets your permit grants are mounted, read-only, under /data. "
            "Only outputs released by the output checkers leave the workspace.</p>"
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        return {"project": (formdata.get("project") or [""])[0]}

    def options_from_query(self, query: dict[str, list[str]]) -> dict[str, str]:
        return self.options_from_form(query)

    # -- start and stop ----------------------------------------------------------

    def requested_project(self) -> str:
        project = str(self.user_options.get("project") or self.name or "")
        if not project:
            raise SpawnRefused("choose a project to start a workspace for")
        if self.name and project != self.name:
            raise SpawnRefused(
                f"the workspace '{self.name}' can only be started for project '{self.name}'"
            )
        return project

    def plan(self) -> SpawnPlan:
        """Ask the policy (again) and check the data; raises `SpawnRefused`."""
        settings = self.tre_settings
        policy = load_policy(settings.policy_dir)
        plan = check_spawn(policy, settings, self.user.name, self.requested_project(), date.today())
        check_plan_datasets(plan, settings.hub_dir, self.log)
        return plan

    def isolate(self, plan: SpawnPlan) -> WorkspaceNetwork:
        """The project's network (`workspace_network`), with the host firewall verified;
        refuses (`SpawnRefused`) when either is not in place (fail closed)."""
        try:
            check_rules(firewall_rules(self.tre_settings))
        except FirewallError as exc:
            self.log.error("refusing spawn: host firewall rules are not in place: %s", exc)
            raise SpawnRefused(
                "the workspace network is not protected right now; the administrator has been told"
            ) from exc
        try:
            return self.workspace_network(docker.from_env(), plan.project)
        except (ProjectNetworkError, docker.errors.DockerException) as exc:
            self.log.error("refusing spawn: project network for %s: %s", plan.project, exc)
            raise SpawnRefused(
                "the project network is not available; the administrator has been told"
            ) from exc

    def workspace_network(self, client: docker.DockerClient, project: str) -> WorkspaceNetwork:
        """The project's internal bridge network, created if need be."""
        return ensure_project_network(client, project)

    def apply(self, plan: SpawnPlan, network: WorkspaceNetwork) -> None:
        """Configure this spawner's container from the plan, replacing what config set."""
        self.apply_workspace(plan, network)
        self.mounts: list[dict[str, Any]] = []
        self.network_name = network.name
        self.extra_host_config = {
            **hardening(self.tre_settings),
            # DNS goes to the gateway, where the firewall refuses it: no name resolves,
            # and no query can leave through the host's own resolver.
            "dns": [str(network.gateway)],
            "dns_opt": ["timeout:1", "attempts:1"],
        }
        self.extra_create_kwargs = {
            "user": f"{WORKSPACE_UID}:{WORKSPACE_GID}",
            "working_dir": str(WORK_DIR),
            "labels": workspace_labels(plan),
        }

    def apply_workspace(self, plan: SpawnPlan, network: WorkspaceNetwork) -> None:
        """What every backend's workspace takes from the plan: its folders and binds (data
        read-only), image, limits, hub URL, environment and server arguments."""
        settings = self.tre_settings
        try:
            self.log.info("%s", prepare_workspace(settings, plan.project))
        except QuotaError as exc:
            raise Refusal(str(exc)) from exc
        resources = project_resources_dir(settings, plan.project)
        # Made here (root's, 0755) so that what an administrator adds later appears live.
        resources.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.volumes = {
            _escape(plan.workspace): {"bind": str(WORK_DIR), "mode": "rw"},
            **{_escape(m.source): {"bind": str(m.target), "mode": "ro"} for m in plan.datasets},
            _escape(resources): {"bind": str(RESOURCES_DIR), "mode": "ro"},
        }
        self.read_only_volumes: dict[str, str] = {}
        self.image = settings.hub.image
        self.mem_limit = plan.mem_limit
        self.cpu_limit = plan.cpu_limit
        self.use_internal_ip = True
        self.hub_connect_url = network.hub_url(settings.hub.hub_port)
        self.notebook_dir = str(WORK_DIR)
        self.default_url = "/lab"
        self.disable_user_config = True
        self.environment = {
            **CONTAINER_ENV,
            **plan.environment,
            **workspace_extension_env(settings, plan, network),
            **pip_env(settings, network, self.api_token),
        }
        self.args = [
            f"--ServerApp.terminals_enabled={plan.terminals_allowed}",
            # No language servers are installed; its start-up scan only slows the first kernel.
            "--ServerApp.jpserver_extensions=jupyter_lsp=False",
        ]

    async def start(self) -> Any:
        project = self.user_options.get("project") or self.name or None
        try:
            plan = await asyncio.to_thread(self.plan)
            network = await asyncio.to_thread(self.isolate, plan)
        except SpawnRefused as exc:
            self._audit(EventKind.spawn_refused, project, None, reason=str(exc))
            raise Refusal(str(exc)) from exc
        self.apply(plan, network)
        self._audit(
            EventKind.spawn_requested,
            plan.project,
            plan.permit,
            datasets=[f"{m.dataset}@{m.version}" for m in plan.datasets],
            server=self.name,
        )
        ip, port = await super().start()
        await self._wait_until_answering(ip, port)
        self._audit(
            EventKind.server_started,
            plan.project,
            plan.permit,
            server=self.name,
            cpu_limit=plan.cpu_limit,
            mem_limit=plan.mem_limit,
        )
        return ip, port

    async def _wait_until_answering(self, ip: str, port: int) -> None:
        """Probe the server every `ready_poll_interval` until it answers (or has died), so
        the hub's own first probe finds it up instead of backing off for seconds."""
        url = f"http://{ip}:{port}" + url_path_join(self.server.base_url, "api")
        began = time.monotonic()
        next_poll = began + 1.0
        while time.monotonic() < began + self.http_timeout:
            try:
                response = await asyncio.wait_for(
                    fetch(url, raise_for_status=False, allow_redirects=False), 2
                )
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass  # not listening yet
            else:
                if response.status < 500:
                    return
            if time.monotonic() >= next_poll:
                next_poll += 1.0
                if (await self.poll()) is not None:
                    raise RuntimeError(f"workspace {self.name} exited while starting")
            await asyncio.sleep(self.ready_poll_interval)

    async def stop(self, now: bool = False) -> Any:
        peak = await self._peak_memory()
        result = await super().stop(now=now)
        project = self.user_options.get("project") or self.name or None
        self._audit(
            EventKind.server_stopped, project, None, server=self.name, peak_memory_bytes=peak
        )
        return result

    async def workspace_container_id(self) -> str | None:
        """The ID of the Docker container the workspace runs in (None: there is none)."""
        container_id: str | None = self.container_id or None
        return container_id

    async def _peak_memory(self) -> int | None:
        """The container's peak memory (for usage accounting); None when not measurable."""
        container_id = await self.workspace_container_id()
        if not container_id:
            return None
        try:
            stats = await self.docker("stats", container_id, stream=False)
        except Exception as exc:  # a missing container or a busy engine: not measured
            self.log.warning("peak memory of %s not measured: %s", container_id[:12], exc)
            return None
        return peak_memory(stats, container_id)
