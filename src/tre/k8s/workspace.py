"""A project workspace as a KubeSpawner override, built from a `SpawnPlan` alone.

The same function gives the profiles in the Helm values and the pod the hub-side
spawner starts, so both mount exactly the plan's dataset versions read-only, the
project workspace read-write and nothing else, and carry the same hardening as the
Docker workspaces: non-root, no capabilities, no privilege escalation, a read-only
root and /tmp in memory.
"""

from __future__ import annotations

import html
from datetime import date
from typing import Any

from tre.hub.plan import DATA_ROOT, WORK_DIR, SpawnPlan, SpawnRefused, check_spawn, spawnable
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.hub.spawner import CONTAINER_ENV, RESOURCES_DIR
from tre.policy import Permit, Policy, Project
from tre.settings import Settings

from .storage import DATASETS_CLAIM, RESOURCES_CLAIM, WORKSPACES_CLAIM, K8sValuesError

PROJECT_LABEL = "jupyter-tre/project"
PERMIT_LABEL = "jupyter-tre/permit"
NETWORK_ACCESS_HUB = "hub.jupyter.org/network-access-hub"
"""The label Zero to JupyterHub's hub NetworkPolicy lets in on the hub's API port."""

HUB_HOST = "$(HUB_SERVICE_HOST)"
"""The hub Service's cluster IP, expanded by the kubelet from the service environment
variables every pod gets: workspaces resolve no names (DNS is closed to them)."""
HUB_API_PORT = 8081
"""The hub's API port in Zero to JupyterHub (fixed by the chart)."""

TMP_SIZE = "1Gi"
"""The workspace's temporary folder is in memory and counts against its memory limit, as
Docker's tmpfs does."""

CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": WORKSPACE_UID,
    "runAsGroup": WORKSPACE_GID,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""Docker's cap_drop ALL, no-new-privileges and read_only, plus the runtime's seccomp
profile: what the Kubernetes "restricted" Pod Security Standard asks, and more."""

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": WORKSPACE_UID,
    "runAsGroup": WORKSPACE_GID,
    "fsGroup": WORKSPACE_GID,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}


def hub_url(port: int) -> str:
    return f"http://{HUB_HOST}:{port}"


def verbatim(value: str) -> str:
    """A string KubeSpawner's template expansion (str.format) passes through unchanged."""
    return value.replace("{", "{{").replace("}", "}}")


def literal(value: str) -> str:
    """An environment value KubeSpawner and the kubelet (`$(VAR)`) pass through unchanged."""
    return verbatim(value).replace("$", "$$")


def _html(text: str) -> str:
    """Profile text as KubeSpawner's form shows it unescaped, and JupyterHub renders the
    form as a Jinja template: escape both."""
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;")


def hub_side_env(settings: Settings, plan: SpawnPlan) -> dict[str, str]:
    """The workspace extension's and pip's settings, as `tre.hub.spawner` gives them on
    Docker, with the hub Service's address instead of the project network's gateway.
    pip's password is the server's own Hub token, expanded by the kubelet."""
    env = {
        "TRE_AUDIT_URL": hub_url(settings.audit.port),
        "TRE_REVIEW_URL": hub_url(settings.review.port),
        "TRE_AUDIT_TIMEOUT": str(settings.audit.confirm_timeout),
        "TRE_MAX_RECORD_BYTES": str(settings.audit.max_record_bytes),
        "TRE_MAX_CONTENT_BYTES": str(settings.hub.max_content_read_bytes),
        "TRE_DATA_ROOT": str(DATA_ROOT),
        "TRE_TERMINALS_ALLOWED": "1" if plan.terminals_allowed else "0",
    }
    if not settings.mirror.enabled:
        return {**env, "PIP_NO_INDEX": "1"}
    mirror = f"{HUB_HOST}:{settings.mirror.port}"
    return {
        **env,
        "PIP_INDEX_URL": f"http://tre:$(JUPYTERHUB_API_TOKEN)@{mirror}/simple/",
        "PIP_TRUSTED_HOST": HUB_HOST,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def label_value(what: str, value: str) -> str:
    """`value` as a Kubernetes label value, or `K8sValuesError` naming it."""
    # Policy slugs are [a-z0-9-]{1,63} starting with a letter or digit; labels must also end so.
    if not value or len(value) > 63 or not value[-1].isalnum():
        raise K8sValuesError(
            f"{what} '{value}' cannot be a Kubernetes label value: at most 63 characters, "
            "ending with a letter or digit"
        )
    return value


def workspace_override(settings: Settings, plan: SpawnPlan, *, image: str) -> dict[str, Any]:
    """KubeSpawner settings for the workspace `plan` describes (a profile's override)."""
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}},
        {"name": WORKSPACES_CLAIM, "persistentVolumeClaim": {"claimName": WORKSPACES_CLAIM}},
        {
            "name": RESOURCES_CLAIM,
            "persistentVolumeClaim": {"claimName": RESOURCES_CLAIM, "readOnly": True},
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
        {
            "name": WORKSPACES_CLAIM,
            "mountPath": str(WORK_DIR),
            "subPath": verbatim(plan.workspace.relative_to(settings.workspaces_dir).as_posix()),
        },
        {
            "name": RESOURCES_CLAIM,
            "mountPath": RESOURCES_DIR,
            "subPath": verbatim(plan.project),
            "readOnly": True,
        },
    ]
    if plan.datasets:
        volumes.append(
            {
                "name": DATASETS_CLAIM,
                "persistentVolumeClaim": {"claimName": DATASETS_CLAIM, "readOnly": True},
            }
        )
        mounts.extend(
            {
                "name": DATASETS_CLAIM,
                "mountPath": str(m.target),
                "subPath": verbatim(m.source.relative_to(settings.datasets_dir).as_posix()),
                "readOnly": True,
            }
            for m in plan.datasets
        )
    environment = {
        **{k: literal(v) for k, v in {**CONTAINER_ENV, **plan.environment}.items()},
        **hub_side_env(settings, plan),
    }
    return {
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "cmd": ["jupyterhub-singleuser"],
        "args": [
            f"--ServerApp.terminals_enabled={plan.terminals_allowed}",
            # No language servers are installed; its start-up scan only slows the first kernel.
            "--ServerApp.jpserver_extensions=jupyter_lsp=False",
        ],
        "cpu_limit": plan.cpu_limit,
        "cpu_guarantee": plan.cpu_limit,
        # Memory is not compressible: reserve what may be used, so no neighbour is OOM-killed.
        "mem_limit": plan.mem_limit,
        "mem_guarantee": plan.mem_limit,
        "uid": WORKSPACE_UID,
        "gid": WORKSPACE_GID,
        "fs_gid": WORKSPACE_GID,
        "privileged": False,
        "allow_privilege_escalation": False,
        "container_security_context": dict(CONTAINER_SECURITY_CONTEXT),
        "pod_security_context": dict(POD_SECURITY_CONTEXT),
        "automount_service_account_token": False,
        # The kubelet expands $(HUB_SERVICE_HOST) from the service links; keep them on.
        "extra_pod_config": {"enableServiceLinks": True},
        "volumes": volumes,
        "volume_mounts": mounts,
        "environment": environment,
        "extra_labels": {
            NETWORK_ACCESS_HUB: "true",
            PROJECT_LABEL: label_value("project id", plan.project),
            PERMIT_LABEL: label_value("permit id", plan.permit),
        },
        "working_dir": str(WORK_DIR),
        "notebook_dir": str(WORK_DIR),
        "default_url": "/lab",
        "disable_user_config": True,
    }


def workspace_choices(
    policy: Policy, today: date, username: str | None = None
) -> list[tuple[Project, Permit, str]]:
    """(project, permit, a person it serves) for every permit someone may work under today
    (`username` given: only that person's), one each, by project and permit id."""
    if username is None:
        people = sorted({person for permit in policy.permits for person in permit.people})
    else:
        people = [username]
    chosen: dict[str, tuple[Project, Permit, str]] = {}
    for person in people:
        for project, permit in spawnable(policy, person, today):
            chosen.setdefault(permit.id, (project, permit, person))
    return sorted(chosen.values(), key=lambda c: (c[0].id, c[1].id))


def profile_list(
    settings: Settings,
    policy: Policy,
    today: date,
    *,
    image: str,
    username: str | None = None,
) -> list[dict[str, Any]]:
    """KubeSpawner profiles: one per permit that lets someone (or `username`) work today.

    A project normally has one such permit; when two overlap, each gets its own profile,
    since each mounts its own datasets. The slug is the permit's id. Each override comes
    from `check_spawn` for a person the permit serves, so a profile never holds more than
    the hub-side check would grant that person.
    """
    profiles = []
    for project, permit, person in workspace_choices(policy, today, username):
        try:
            plan = check_spawn(policy, settings, person, project.id, today)
        except SpawnRefused as exc:  # the catalogue lacks a granted version: fail closed
            raise K8sValuesError(f"permit '{permit.id}': {exc}") from exc
        datasets = ", ".join(f"{m.dataset} {m.version}" for m in plan.datasets) or "none"
        profiles.append(
            {
                "display_name": _html(project.title),
                "slug": permit.id,
                "description": _html(
                    f"Permit {permit.id} ({permit.purpose.label}) until {permit.expiry}. "
                    f"Read-only under {DATA_ROOT}: {datasets}."
                ),
                "kubespawner_override": workspace_override(settings, plan, image=image),
            }
        )
    return profiles
