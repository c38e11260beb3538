"""What a workspace for one person and one project gets, decided from the policy alone.

`check_spawn` is the single place that says yes or no to a workspace; it is asked
again at every spawn (never trusting a form) and raises `SpawnRefused` saying why.
The plan mounts exactly the permitted dataset versions read-only and the project
workspace read-write — nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath

from tre.policy import Permit, PermitError, Policy, Project
from tre.settings import Settings

from .project_state import LifecycleError, check_not_suspended

DATA_ROOT = PurePosixPath("/data")
WORK_DIR = PurePosixPath("/home/researcher/work")


class SpawnRefused(Exception):
    """A workspace may not start; the message is shown to the person who asked."""


@dataclass(frozen=True)
class DatasetMount:
    dataset: str
    version: str
    source: Path
    target: PurePosixPath
    manifest_sha256: str | None


@dataclass(frozen=True)
class SpawnPlan:
    username: str
    project: str
    permit: str
    datasets: tuple[DatasetMount, ...]
    workspace: Path
    cpu_limit: float
    mem_limit: str
    terminals_allowed: bool
    environment: dict[str, str] = field(default_factory=dict)


def spawnable(policy: Policy, username: str, today: date) -> list[tuple[Project, Permit]]:
    """The projects `username` may open a workspace for today, with the permit that allows it."""
    found = []
    for project in policy.projects:
        permit = policy.current_permit(project.id, username, today)
        if permit is not None:
            found.append((project, permit))
    return found


def check_spawn(
    policy: Policy, settings: Settings, username: str, project_id: str, today: date
) -> SpawnPlan:
    project = policy.project(project_id)
    if project is None or not project.is_member(username):
        raise SpawnRefused(f"you are not a member of a project called '{project_id}'")
    permit = policy.current_permit(project_id, username, today)
    if permit is None:
        raise SpawnRefused(_why_no_permit(policy, project_id, username, today))
    try:
        check_not_suspended(settings, project_id)
    except LifecycleError as exc:
        raise SpawnRefused(f"{exc}; ask the data manager") from exc
    mounts = permit_mounts(policy, settings, permit)
    conditions = permit.conditions
    return SpawnPlan(
        username=username,
        project=project_id,
        permit=permit.id,
        datasets=tuple(mounts),
        workspace=settings.workspaces_dir / project_id,
        cpu_limit=conditions.cpu_limit or settings.hub.cpu_limit,
        mem_limit=conditions.mem_limit or settings.hub.mem_limit,
        terminals_allowed=conditions.terminals_allowed,
        environment={
            "TRE_PROJECT": project_id,
            "TRE_PERMIT": permit.id,
            "TRE_PERMIT_PURPOSE": permit.purpose.label,
            "TRE_PERMIT_EXPIRY": permit.expiry.isoformat(),
            "TRE_DATASETS": ",".join(f"{m.dataset}@{m.version}" for m in mounts),
        },
    )


def permit_mounts(policy: Policy, settings: Settings, permit: Permit) -> list[DatasetMount]:
    """The dataset versions `permit` grants, as mounts of its project's copies."""
    mounts = []
    for grant in permit.datasets:
        dataset = policy.dataset(grant.dataset)
        version = dataset.version(grant.version) if dataset else None
        if dataset is None or version is None:  # validation prevents this; fail closed anyway
            raise SpawnRefused(
                f"permit '{permit.id}' grants '{grant.dataset}' version '{grant.version}', "
                "which the catalogue does not list; ask the data manager"
            )
        mounts.append(
            DatasetMount(
                dataset=dataset.id,
                version=version.id,
                source=settings.datasets_dir / version.folder(dataset.id, permit.project),
                target=DATA_ROOT / dataset.id,
                manifest_sha256=version.manifest_sha256,
            )
        )
    return mounts


def can_spawn(
    policy: Policy, settings: Settings, username: str, project_id: str, today: date
) -> bool:
    try:
        check_spawn(policy, settings, username, project_id, today)
    except SpawnRefused:
        return False
    return True


def _why_no_permit(policy: Policy, project_id: str, username: str, today: date) -> str:
    naming = [p for p in policy.permits if p.project == project_id and username in p.people]
    if not naming:
        return f"no permit of project '{project_id}' names you; ask your principal investigator"
    latest = max(naming, key=lambda p: p.expiry)
    try:
        latest.check_usable(today)
    except PermitError as exc:
        return f"{exc} (project '{project_id}')"
    return f"permit '{latest.id}' of project '{project_id}' does not allow this today"
