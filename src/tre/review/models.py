"""Release requests as typed, immutable records: files with their context, reviews, comments
and history.

A request's `files` are the current version of each file; older versions stay in the
store and in `history`. Reviews name the file versions they covered, so an approval
of an older version never counts for a newer one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .states import RequestState, Step

Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
"""Free text that must say something."""


class Verdict(StrEnum):
    """The automated checks' overall verdict on one file (mirrors `tre.review.checks`)."""

    passed = "pass"
    review = "review"
    fail = "fail"
    block = "block"
    """Something that must never leave (an identifier): the file cannot be approved."""


class Decision(StrEnum):
    approve = "approve"
    return_ = "return"
    reject = "reject"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controls(_Model):
    """What the researcher did to make the output safe."""

    population: Text = Field(description="Who the numbers describe (cohort, period, site).")
    suppression: Text = Field(
        description="Suppression, rounding or other controls applied (or why none are needed)."
    )


class ReleaseFile(_Model):
    """One version of one file of a request, as the service stored it."""

    name: str = Field(description="File name within the request (the workspace file's name).")
    version: int = Field(ge=1)
    workspace_path: str = Field(description="Path relative to the project's workspace folder.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    kind: str = Field(description="table, figure, acro_results, text or other.")
    description: Text
    context: Text = Field(description="What the output shows and why it is needed.")
    controls: Controls
    stored_path: Path = Field(description="The service's immutable copy.")
    checks: dict[str, Any] | None = Field(
        default=None, description="The automated checks' result (FileChecks as JSON)."
    )
    verdict: Verdict | None = None
    added_by: str
    added_at: datetime


class Review(_Model):
    """A checker's decision, on one file or on the whole request."""

    checker: str
    decision: Decision
    file: str | None = Field(default=None, description="None: the whole request.")
    reason: str | None = None
    at: datetime
    file_versions: dict[str, int] = Field(
        description="The version of each file the decision covered."
    )


class Comment(_Model):
    """A remark on one file version, by a checker or the author."""

    author: str
    file: str
    version: int
    text: Text
    at: datetime


class HistoryEntry(_Model):
    """A step in a request's history, numbered from 1."""

    seq: int = Field(ge=1)
    step: Step


class ReleaseRequest(_Model):
    """A request to release files from one project, under one permit."""

    id: str
    project: str
    permit: str
    author: str
    title: Text
    description: str = ""
    state: RequestState
    created: datetime
    updated: datetime
    reviews_required: int = Field(ge=1, le=2)
    revision: int = Field(default=0, ge=0, description="Bumped by every change (optimistic lock).")
    files: tuple[ReleaseFile, ...] = ()
    reviews: tuple[Review, ...] = ()
    comments: tuple[Comment, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def file(self, name: str) -> ReleaseFile | None:
        return next((f for f in self.files if f.name == name), None)

    def file_versions(self) -> dict[str, int]:
        return {f.name: f.version for f in self.files}

    def approvers(self, name: str) -> frozenset[str]:
        """Distinct checkers who approved the current version of file `name`."""
        current = self.file(name)
        if current is None:
            return frozenset()
        return frozenset(
            r.checker
            for r in self.reviews
            if r.decision is Decision.approve and r.file_versions.get(name) == current.version
        )

    def missing_approvals(self) -> dict[str, int]:
        """For each file still short of approvals, how many it lacks."""
        return {
            f.name: self.reviews_required - len(self.approvers(f.name))
            for f in self.files
            if len(self.approvers(f.name)) < self.reviews_required
        }

    def is_fully_approved(self) -> bool:
        return bool(self.files) and not self.missing_approvals()

    def blocked_files(self) -> dict[str, str]:
        """Files whose checks block their release, with why (for the checker and the author)."""
        return {f.name: block_reason(f) for f in self.files if f.verdict is Verdict.block}


def block_reason(file: ReleaseFile) -> str:
    """A one-line account of why the checks block a file: the messages of its blocking
    findings (`tre.review.checks.FileChecks`), else its summary."""
    checks = file.checks or {}
    reasons = [
        str(item.get("message") or item.get("check") or "blocked")
        for item in checks.get("findings", []) or []
        if isinstance(item, dict) and item.get("verdict") == Verdict.block
    ]
    if not reasons and isinstance(checks.get("summary"), str):
        reasons.append(checks["summary"])
    return "; ".join(reasons) or "the automated checks block this file"


class ReleasedFile(_Model):
    """A file of a released request (what the publication service builds on)."""

    request_id: str
    author: str
    file: ReleaseFile
