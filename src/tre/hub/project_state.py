"""A project's recorded lifecycle state (`var/projects/<id>/state.json`), and the check
the spawner makes before every start. Written by `tre.hub.lifecycle`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tre.settings import Settings


class LifecycleError(Exception):
    """A project cannot move as asked; the message says why. Nothing was changed."""


class ProjectState(StrEnum):
    provisioned = "provisioned"
    suspended = "suspended"
    archived = "archived"


class StateRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    state: ProjectState
    at: datetime
    by: str
    reason: str | None = None


def state_file(settings: Settings, project: str) -> Path:
    return settings.var_dir / "projects" / project / "state.json"


def project_state(settings: Settings, project: str) -> StateRecord | None:
    """The project's recorded state; None when it was never provisioned by hand."""
    path = state_file(settings, project)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LifecycleError(f"{path}: cannot read the project's state: {exc}") from exc
    try:
        return StateRecord.model_validate_json(text)
    except ValidationError as exc:
        raise LifecycleError(f"{path}: not a project state record: {exc}") from exc


def check_not_suspended(settings: Settings, project: str) -> None:
    """Raise `LifecycleError` when workspaces of `project` must not start (fail closed: an
    unreadable state refuses too)."""
    record = project_state(settings, project)
    if record is not None and record.state is not ProjectState.provisioned:
        why = f": {record.reason}" if record.reason else ""
        raise LifecycleError(
            f"project '{project}' is {record.state} since {record.at:%Y-%m-%d}{why}"
        )
