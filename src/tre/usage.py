"""Usage per project and month, for the site's fee schedule and capacity planning.

Health data access bodies may charge for access (EHDS Art. 62); a site needs what each
project used. Everything comes from records the TRE keeps anyway:

- sessions, their length and the CPUs and memory they were given: the audit log's
  `server_started` (with `cpu_limit`, `mem_limit`) and `server_stopped` records, paired
  per person and server in each project's chain;
- peak memory: measured from the Docker engine when a workspace stops
  (`server_stopped.detail.peak_memory_bytes`);
- storage: the project's workspace folder (and its resources), measured now.

A session that spans months is split at midnight UTC of the first of the month; one still
running counts until `now`. Compute hours are hours times the CPUs the session was given
(what a fee schedule charges for: the reservation, not the load).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tre.audit import AuditRecord, AuditStore, EventKind
from tre.settings import Settings

CSV_COLUMNS = (
    "project",
    "month",
    "sessions",
    "session_hours",
    "compute_hours",
    "peak_memory_bytes",
    "storage_bytes",
)


class UsageError(ValueError):
    """A usage report cannot be made as asked; the message says why."""


class UsageRow(BaseModel):
    """One project's use of the TRE in one calendar month (UTC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    sessions: int = Field(ge=0, description="Workspace sessions started in the month.")
    session_hours: float = Field(ge=0, description="Hours workspaces ran in the month.")
    compute_hours: float = Field(ge=0, description="session hours times the CPUs given.")
    peak_memory_bytes: int | None = Field(
        description="Highest peak memory of a session that ended in the month (measured)."
    )
    storage_bytes: int | None = Field(
        description="Workspace and resources now; only in the current month's row."
    )


@dataclass(frozen=True)
class Session:
    project: str
    user: str
    server: str | None
    start: datetime
    end: datetime | None
    cpus: float
    peak_memory_bytes: int | None


def check_month(value: str) -> datetime:
    """The first instant of month `value` (YYYY-MM), UTC; `UsageError` naming it if not."""
    try:
        first = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"month {value!r}: give it as YYYY-MM, e.g. 2026-11") from exc
    return first


def next_month(first: datetime) -> datetime:
    return (first + timedelta(days=32)).replace(day=1)


def sessions_of(records: Iterable[AuditRecord], default_cpus: float) -> list[Session]:
    """Sessions from one project's records in chain order: each start closed by the next
    stop of the same person's server; a start with no stop is still running."""
    open_: dict[tuple[str, str | None], AuditRecord] = {}
    found: list[Session] = []

    def close(start: AuditRecord, end: datetime | None, peak: int | None) -> None:
        cpus = start.detail.get("cpu_limit")
        found.append(
            Session(
                project=start.project,
                user=start.actor,
                server=start.server,
                start=start.at,
                end=end,
                cpus=float(cpus) if isinstance(cpus, int | float) else default_cpus,
                peak_memory_bytes=peak,
            )
        )

    for record in records:
        key = (record.actor, record.server)
        if record.kind is EventKind.server_started:
            earlier = open_.pop(key, None)
            if earlier is not None:  # restarted without a stop record (hub crash): ends here
                close(earlier, record.at, None)
            open_[key] = record
        elif record.kind is EventKind.server_stopped and key in open_:
            peak = record.detail.get("peak_memory_bytes")
            close(open_.pop(key), record.at, peak if isinstance(peak, int) else None)
    for start in open_.values():
        close(start, None, None)
    return found


def monthly_usage(
    sessions: Sequence[Session],
    months: Sequence[datetime],
    now: datetime,
    storage: dict[str, int] | None = None,
) -> list[UsageRow]:
    """One row per project with sessions, per month in `months` (first instants, UTC)."""
    storage = storage or {}
    current = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    projects = sorted({s.project for s in sessions} | set(storage))
    rows = []
    for first in months:
        last = next_month(first)
        for project in projects:
            mine = [s for s in sessions if s.project == project]
            hours = compute = 0.0
            started = 0
            peaks = []
            for s in mine:
                end = s.end or now
                overlap = (min(end, last) - max(s.start, first)).total_seconds()
                if overlap > 0:
                    hours += overlap / 3600
                    compute += overlap / 3600 * s.cpus
                if first <= s.start < last:
                    started += 1
                if s.end is not None and first <= s.end < last and s.peak_memory_bytes:
                    peaks.append(s.peak_memory_bytes)
            here = storage.get(project) if first == current else None
            if started == 0 and hours == 0 and here is None:
                continue
            rows.append(
                UsageRow(
                    project=project,
                    month=f"{first:%Y-%m}",
                    sessions=started,
                    session_hours=round(hours, 3),
                    compute_hours=round(compute, 3),
                    peak_memory_bytes=max(peaks) if peaks else None,
                    storage_bytes=here,
                )
            )
    return rows


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder`; links are not followed."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(Path(root) / name)
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def storage_by_project(settings: Settings) -> dict[str, int]:
    """Workspace plus resources of every project that has either, now."""
    sizes: dict[str, int] = {}
    for base in (settings.workspaces_dir, settings.var_dir / "resources"):
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            if folder.is_dir() and not folder.is_symlink():
                sizes[folder.name] = sizes.get(folder.name, 0) + folder_bytes(folder)
    return sizes


def usage_report(
    settings: Settings, audit: AuditStore, first: str, last: str, now: datetime | None = None
) -> list[UsageRow]:
    """Usage from month `first` to month `last` (YYYY-MM, inclusive)."""
    now = now or datetime.now(UTC)
    start, end = check_month(first), check_month(last)
    if end < start:
        raise UsageError(f"months {first}..{last}: the last month is before the first")
    months = [start]
    while months[-1] < end:
        months.append(next_month(months[-1]))
    if len(months) > 120:
        raise UsageError(f"months {first}..{last}: at most 120 months at once")
    sessions: list[Session] = []
    kinds = (EventKind.server_started, EventKind.server_stopped)
    for chain in audit.chains():
        records = [r for _, r in audit.db_rows(chain) if r is not None and r.kind in kinds]
        sessions += sessions_of(records, settings.hub.cpu_limit)
    return monthly_usage(sessions, months, now, storage_by_project(settings))


def usage_csv(rows: Sequence[UsageRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        data = row.model_dump()
        writer.writerow(["" if data[c] is None else data[c] for c in CSV_COLUMNS])
    return out.getvalue()
