"""A project's life on the hub host: provisioned, suspended, archived.

States and transitions are data (`TRANSITIONS`); `tre project provision|suspend|archive`
moves a project along them, each move audited in the project's chain:

- **provision** (also: resume a suspended project): the workspace folder (uid 1000, gid
  100, 2770) and the resources folder, the project's internal network, the host firewall
  rules, and every dataset version the project's current permits grant checked against
  its sealed manifest. Idempotent; the state is written only when every step passed.
- **suspend**: no workspace of the project may start (`check_not_suspended`, called by the
  spawner's plan) and its running containers are stopped. Everything is kept.
- **archive**: the end. The audit log and the review service's copies (released outputs
  among them) are kept; the workspace, the resources, the project's pseudonymised dataset
  copies and its network are removed. Irreversible, so it asks for the project id again.

A project with no state file was never provisioned by hand: the spawner provisions what it
needs at the first start, as before.
"""

from __future__ import annotations

import os
import shutil
import stat
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

import docker
import docker.errors

from tre.audit import AuditEvent, EventKind, open_store
from tre.policy import Policy
from tre.settings import Settings
from tre.swarm.networks import is_swarm_manager, overlay_name, remove_overlay_network

from .config import firewall_rules
from .datasets import DatasetUnavailable, VerificationCache, check_dataset
from .firewall import apply_rules
from .networks import (
    PROJECT_LABEL,
    ProjectNetworkError,
    ensure_project_network,
    remove_project_network,
)
from .plan import DatasetMount, SpawnRefused, permit_mounts
from .project_state import (
    LifecycleError,
    ProjectState,
    StateRecord,
    project_state,
    state_file,
)
from .quota import WORKSPACE_GID, WORKSPACE_UID, QuotaError, prepare_workspace, release_workspace


class Move(StrEnum):
    provision = "provision"
    suspend = "suspend"
    archive = "archive"


NEW = None
"""The state of a project never provisioned by hand."""

TRANSITIONS: dict[tuple[ProjectState | None, Move], ProjectState] = {
    (NEW, Move.provision): ProjectState.provisioned,
    (ProjectState.provisioned, Move.provision): ProjectState.provisioned,  # idempotent
    (ProjectState.suspended, Move.provision): ProjectState.provisioned,  # resume
    (NEW, Move.suspend): ProjectState.suspended,
    (ProjectState.provisioned, Move.suspend): ProjectState.suspended,
    (ProjectState.suspended, Move.suspend): ProjectState.suspended,
    (NEW, Move.archive): ProjectState.archived,
    (ProjectState.provisioned, Move.archive): ProjectState.archived,
    (ProjectState.suspended, Move.archive): ProjectState.archived,
}
"""Every allowed move; an archived project moves nowhere."""

PAST = {Move.provision: "provisioned", Move.suspend: "suspended", Move.archive: "archived"}

EVENTS = {
    Move.provision: EventKind.project_provisioned,
    Move.suspend: EventKind.project_suspended,
    Move.archive: EventKind.project_archived,
}


def check_move(settings: Settings, project: str, move: Move) -> ProjectState:
    """The state `move` leads to; `LifecycleError` when it is not allowed."""
    current = project_state(settings, project)
    here = current.state if current else NEW
    target = TRANSITIONS.get((here, move))
    if target is None:
        raise LifecycleError(
            f"project '{project}' is {here or 'not provisioned'}: it cannot be {PAST[move]}"
        )
    return target


def can_move(settings: Settings, project: str, move: Move) -> bool:
    try:
        check_move(settings, project, move)
    except LifecycleError:
        return False
    return True


def provision(
    settings: Settings, policy: Policy, project: str, *, by: str, today: date
) -> list[str]:
    """Set the project up (or resume it); the list says what was checked or made."""
    _known(policy, project)
    check_move(settings, project, Move.provision)
    done = []
    try:
        said = prepare_workspace(settings, project)
    except QuotaError as exc:
        raise LifecycleError(f"project '{project}': {exc}") from exc
    done.append(f"{said} (uid {WORKSPACE_UID}, gid {WORKSPACE_GID}, 2770)")
    resources = settings.var_dir / "resources" / project
    resources.mkdir(parents=True, exist_ok=True, mode=0o755)
    done.append(f"resources {resources} (read-only in workspaces)")
    try:
        network = ensure_project_network(docker.from_env(), project)
    except docker.errors.DockerException as exc:
        raise LifecycleError(f"project '{project}': Docker engine: {exc}") from exc
    done.append(f"network {network.name} (internal, bridge {network.bridge}, {network.subnet})")
    apply_rules(firewall_rules(settings))
    done.append("host firewall rules in place")
    cache = VerificationCache(settings.hub_dir / "verified-files.json")
    problems = []
    for mount in _granted(policy, settings, project, today):
        try:
            check_dataset(mount, cache)
        except DatasetUnavailable as exc:
            problems.append(str(exc))
        else:
            done.append(f"dataset {mount.dataset}@{mount.version} matches its manifest")
    if problems:
        raise LifecycleError(f"project '{project}' is not provisioned: " + "; ".join(problems))
    _record(settings, project, Move.provision, by=by, reason=None, detail={"steps": done})
    return done


def suspend(settings: Settings, policy: Policy, project: str, *, by: str, reason: str) -> list[str]:
    """Stop the project's workspaces and refuse new ones until it is provisioned again."""
    _known(policy, project)
    if not reason.strip():
        raise LifecycleError("a suspension needs a reason (--reason)")
    check_move(settings, project, Move.suspend)
    _record(settings, project, Move.suspend, by=by, reason=reason, detail={})
    stopped = _stop_containers(project)
    return [f"workspaces refused from now on; stopped: {', '.join(stopped) or 'none running'}"]


def archive(
    settings: Settings, policy: Policy, project: str, *, by: str, reason: str, confirm: str
) -> list[str]:
    """Keep the audit log and the review copies; remove the workspace, resources, dataset
    copies and network. `confirm` must repeat the project id."""
    _known(policy, project)
    if confirm != project:
        raise LifecycleError(
            f"archiving removes project '{project}''s workspace and data: repeat its id "
            "with --confirm"
        )
    if not reason.strip():
        raise LifecycleError("an archive needs a reason (--reason)")
    check_move(settings, project, Move.archive)
    # Refuse new starts first, then stop and remove.
    _record(settings, project, Move.suspend, by=by, reason=f"archiving: {reason}", detail={})
    done = [f"stopped: {', '.join(_stop_containers(project)) or 'none running'}"]
    removed: dict[str, int] = {}
    try:
        done.extend(release_workspace(settings, project))
    except QuotaError as exc:
        raise LifecycleError(f"project '{project}': {exc}") from exc
    for folder in (
        settings.workspaces_dir / project,
        settings.var_dir / "resources" / project,
        settings.datasets_dir / project,
    ):
        if folder.exists():
            removed[str(folder)] = _remove_tree(folder)
            done.append(f"removed {folder}")
    try:
        client = docker.from_env()
        if remove_project_network(client, project):
            done.append(f"removed network tre-project-{project}")
        if remove_overlay_network(client, project):
            done.append(f"removed overlay network {overlay_name(project)}")
    except (docker.errors.DockerException, ProjectNetworkError) as exc:
        raise LifecycleError(f"project '{project}': Docker engine: {exc}") from exc
    done.append(
        f"kept the audit log and the review service's copies ({settings.releases_dir / project})"
    )
    _record(settings, project, Move.archive, by=by, reason=reason, detail={"removed": removed})
    return done


def _known(policy: Policy, project: str) -> None:
    if policy.project(project) is None:
        known = ", ".join(p.id for p in policy.projects)
        raise LifecycleError(f"no project '{project}' in the policy (known: {known})")


def _granted(policy: Policy, settings: Settings, project: str, today: date) -> list[DatasetMount]:
    mounts: dict[tuple[str, str], DatasetMount] = {}
    for permit in policy.permits:
        if permit.project == project and permit.can_use(today):
            try:
                found = permit_mounts(policy, settings, permit)
            except SpawnRefused as exc:
                raise LifecycleError(str(exc)) from exc
            mounts.update({(m.dataset, m.version): m for m in found})
    return list(mounts.values())


def _record(
    settings: Settings,
    project: str,
    move: Move,
    *,
    by: str,
    reason: str | None,
    detail: dict[str, object],
) -> None:
    now = datetime.now(UTC)
    target = check_move(settings, project, move)
    open_store(settings).append(
        AuditEvent(
            kind=EVENTS[move],
            actor=by,
            project=project,
            at=now,
            detail={"state": str(target), "reason": reason, **detail},
        )
    )
    path = state_file(settings, project)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = StateRecord(project=project, state=target, at=now, by=by, reason=reason)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _stop_containers(project: str) -> list[str]:
    """Stop the project's workspaces: on a swarm manager, remove its workspace services
    first (their tasks go with them, and the overlay is free); then stop its containers.
    The hub sees them stopped at its next poll."""
    label = f"{PROJECT_LABEL}={project}"
    stopped = []
    try:
        client = docker.from_env()
        if is_swarm_manager(client):
            for service in client.services.list(filters={"label": label}):
                service.remove()
                stopped.append(f"service {service.name}")
        for container in client.containers.list(filters={"label": label}):
            try:
                container.stop(timeout=10)
            except docker.errors.NotFound:  # a removed service's task, gone meanwhile
                continue
            stopped.append(str(container.name))
    except docker.errors.DockerException as exc:
        raise LifecycleError(f"project '{project}': cannot stop its workspaces: {exc}") from exc
    return stopped


def _remove_tree(folder: Path) -> int:
    """Remove `folder` (read-only dataset copies included); the bytes it held."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o700)
        for name in files:
            info = os.lstat(Path(root) / name)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    folder.chmod(0o700)
    shutil.rmtree(folder)
    return total


def describe(record: StateRecord | None) -> str:
    if record is None:
        return "not provisioned by hand (the first workspace start sets it up)"
    why = f" ({record.reason})" if record.reason else ""
    return f"{record.state} since {record.at:%Y-%m-%d %H:%M} UTC by {record.by}{why}"
