"""What the API answers and the pages show about a request: never the store's own paths.

A file's view is built from the service's stored copy (checked against its checksum),
never from the workspace; a table's cells named by a finding that did not pass are
marked, so the checker sees exactly what the checks saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any

from ..checks.tables import read_table
from ..filestore import FileStore
from ..models import ReleaseFile, ReleaseRequest

MAX_ROWS_SHOWN = 500

INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".pdf": "application/pdf",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".tsv": "text/plain; charset=utf-8",
    ".json": "text/plain; charset=utf-8",
}
"""Content types a stored copy is shown inline with; anything else is a download."""


def content_type(name: str) -> str:
    return INLINE_TYPES.get(PurePath(name).suffix.lower(), "application/octet-stream")


def _at(value: datetime) -> str:
    return value.isoformat()


def findings_of(f: ReleaseFile) -> list[dict[str, Any]]:
    found = (f.checks or {}).get("findings") or []
    return [item for item in found if isinstance(item, dict)]


def file_json(req: ReleaseRequest, f: ReleaseFile) -> dict[str, Any]:
    return {
        "name": f.name,
        "version": f.version,
        "workspace_path": f.workspace_path,
        "kind": f.kind,
        "size": f.size,
        "sha256": f.sha256,
        "description": f.description,
        "context": f.context,
        "controls": f.controls.model_dump(),
        "verdict": str(f.verdict) if f.verdict else None,
        "summary": (f.checks or {}).get("summary"),
        "findings": [
            {k: item.get(k) for k in ("check", "verdict", "message", "cells", "source")}
            for item in findings_of(f)
        ],
        "approvers": sorted(req.approvers(f.name)),
        "added_by": f.added_by,
        "added_at": _at(f.added_at),
    }


def request_json(req: ReleaseRequest) -> dict[str, Any]:
    """A request as the API answers it: its state, each file's check summary, its history."""
    return {
        "id": req.id,
        "project": req.project,
        "permit": req.permit,
        "author": req.author,
        "title": req.title,
        "description": req.description,
        "state": str(req.state),
        "created": _at(req.created),
        "updated": _at(req.updated),
        "reviews_required": req.reviews_required,
        "missing_approvals": req.missing_approvals(),
        "blocked": req.blocked_files(),
        "files": [file_json(req, f) for f in req.files],
        "comments": [
            {
                "author": c.author,
                "file": c.file,
                "version": c.version,
                "text": c.text,
                "at": _at(c.at),
            }
            for c in req.comments
        ],
        "history": [
            {
                "seq": h.seq,
                "action": str(h.step.action),
                "actor": h.step.actor,
                "from": str(h.step.from_state),
                "to": str(h.step.to_state),
                "at": _at(h.step.at),
                "reason": h.step.reason,
            }
            for h in req.history
        ],
    }


@dataclass
class Cell:
    text: str
    flagged: list[str] = field(default_factory=list)
    """The checks that named this cell (empty: nothing to see)."""


@dataclass
class TableView:
    sheet: str
    columns: list[str]
    rows: list[list[Cell]]
    truncated: int = 0


@dataclass
class FileView:
    file: ReleaseFile
    findings: list[dict[str, Any]]
    tables: list[TableView] = field(default_factory=list)
    problem: str | None = None
    inline: str | None = None
    """'image' or 'pdf' or 'text' when the page embeds the stored copy."""


def flagged_cells(f: ReleaseFile) -> dict[tuple[str, str], list[str]]:
    """(row label, column) → the checks that did not pass on that cell."""
    out: dict[tuple[str, str], list[str]] = {}
    for item in findings_of(f):
        if item.get("verdict") == "pass":
            continue
        for cell in item.get("cells") or []:
            if isinstance(cell, list | tuple) and len(cell) == 2:
                out.setdefault((str(cell[0]), str(cell[1])), []).append(str(item.get("check")))
    return out


def file_view(store: FileStore, f: ReleaseFile) -> FileView:
    """How the page shows one file: tables rendered from the stored copy, figures inline."""
    view = FileView(file=f, findings=findings_of(f))
    ctype = content_type(f.name)
    if f.kind == "table":
        store.verify(f.stored_path, f.sha256)
        sheets = read_table(f.stored_path)
        if not isinstance(sheets, list):
            view.problem = sheets.message
            return view
        flagged = flagged_cells(f)
        for sheet in sheets:
            columns = [str(c) for c in sheet.frame.columns]
            rows: list[list[Cell]] = []
            for i, values in enumerate(sheet.frame.itertuples(index=False)):
                if i >= MAX_ROWS_SHOWN:
                    break
                label = str(sheet.rows[i]) if i < len(sheet.rows) else str(i)
                rows.append(
                    [
                        Cell("" if v is None else str(v), flagged.get((label, col), []))
                        for col, v in zip(columns, values, strict=True)
                    ]
                )
            truncated = max(0, len(sheet.frame) - MAX_ROWS_SHOWN)
            view.tables.append(TableView(sheet.name, columns, rows, truncated))
    elif ctype.startswith("image/"):
        view.inline = "image"
    elif ctype == "application/pdf":
        view.inline = "pdf"
    elif ctype.startswith("text/"):
        view.inline = "text"
    return view
