"""What each project installed from the package mirror, read back from the audit log.

Invariant: the list is only what the audit store holds as `package_installed`
records (written hub-side by the mirror); nothing here writes or infers an install.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tre.audit import EventKind

if TYPE_CHECKING:
    from tre.audit import AuditRecord, AuditStore


@dataclass(frozen=True)
class Install:
    at: datetime
    project: str
    user: str
    permit: str | None
    name: str
    version: str
    sha256: str
    filename: str

    @property
    def short_sha256(self) -> str:
        return self.sha256[:12]


def from_record(record: AuditRecord) -> Install:
    detail = record.detail
    return Install(
        at=record.at,
        project=record.project,
        user=record.actor,
        permit=record.permit,
        name=str(detail.get("name", "")),
        version=str(detail.get("version", "")),
        sha256=str(detail.get("sha256", "")),
        filename=str(detail.get("filename", "")),
    )


def installed_packages(
    store: AuditStore, *, project: str | None = None, since: datetime | None = None
) -> list[Install]:
    """Every recorded install, oldest first; optionally one project's, from `since` on."""
    records = store.show(project=project, since=since, kind=EventKind.package_installed)
    return [from_record(r) for r in records]
