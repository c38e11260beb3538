"""Audit events: typed records of who did what, in which project, under which permit, when.

Every event carries the actor, project, permit and time; the `kind` decides which
detail fields it has. Events are data: nothing here writes or sends them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventKind(StrEnum):
    spawn_requested = "spawn_requested"
    spawn_refused = "spawn_refused"
    server_started = "server_started"
    server_stopped = "server_stopped"
    permit_ended_stop = "permit_ended_stop"
    execute = "execute"
    file_saved = "file_saved"
    kernel_event = "kernel_event"
    audit_pruned = "audit_pruned"
    review_created = "review_created"
    review_file_added = "review_file_added"
    review_file_removed = "review_file_removed"
    review_submitted = "review_submitted"
    review_started = "review_started"
    review_approval = "review_approval"
    review_comment = "review_comment"
    review_returned = "review_returned"
    review_rejected = "review_rejected"
    review_approved = "review_approved"
    review_released = "review_released"
    review_withdrawn = "review_withdrawn"
    review_downloaded = "review_downloaded"
    package_installed = "package_installed"
    """The package mirror served a file to a workspace: detail {name, version, sha256,
    filename}. Written hub-side by the mirror, never accepted from a workspace."""
    project_provisioned = "project_provisioned"
    """An administrator provisioned (or resumed) a project: detail {state, steps}."""
    project_suspended = "project_suspended"
    """An administrator suspended a project: detail {state, reason}."""
    project_archived = "project_archived"
    """An administrator archived a project: detail {state, reason, removed: {folder: bytes}}."""
    resource_added = "resource_added"
    """An administrator added a read-only project resource (`tre resources add`): detail
    {name, files, bytes, manifest_sha256}. Written by the admin command, never accepted from
    a workspace."""


WORKSPACE_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.execute, EventKind.file_saved, EventKind.kernel_event}
)
"""The kinds a workspace may send to the audit service; every other kind is the TRE's own."""


class AuditEvent(BaseModel):
    """One audited action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EventKind
    actor: str = Field(description="Username, or 'system:<component>' for the TRE itself.")
    project: str | None = None
    permit: str | None = None
    server: str | None = Field(
        default=None, description="The workspace's server name (the project's named server)."
    )
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    detail: dict[str, Any] = Field(default_factory=dict)
