"""What the checks say about one file: findings with a verdict each, and the worst of them.

Invariant: a file's verdict is never better than any of its findings' verdicts, and every
finding says in words a checker understands what triggered it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FileKind(StrEnum):
    """What a submitted file is, by its name; decides which checks run."""

    table = "table"
    figure = "figure"
    acro_results = "acro_results"
    text = "text"
    other = "other"


_SUFFIX_KINDS: dict[str, FileKind] = {
    ".csv": FileKind.table,
    ".tsv": FileKind.table,
    ".xlsx": FileKind.table,
    ".png": FileKind.figure,
    ".svg": FileKind.figure,
    ".pdf": FileKind.figure,
    ".jpg": FileKind.figure,
    ".jpeg": FileKind.figure,
    ".txt": FileKind.text,
    ".md": FileKind.text,
}

ACRO_RESULTS_NAME = "results.json"
"""The file ACRO's `finalise(path, "json")` writes."""


def kind_of(filename: str) -> FileKind:
    """The kind of a file from its name alone (case-insensitive suffix)."""
    name = PurePath(filename).name.lower()
    if name == ACRO_RESULTS_NAME:
        return FileKind.acro_results
    return _SUFFIX_KINDS.get(PurePath(name).suffix, FileKind.other)


class Verdict(StrEnum):
    """pass < review < fail < block. `block`: something that must never leave."""

    passed = "pass"
    review = "review"
    fail = "fail"
    block = "block"


_RANK = {Verdict.passed: 0, Verdict.review: 1, Verdict.fail: 2, Verdict.block: 3}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of `verdicts` (pass when there are none)."""
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.passed)


Cell = tuple[str, str]
"""(row label, column label) of a table cell, as the checker sees it."""


class Finding(BaseModel):
    """One check's outcome on one file."""

    model_config = ConfigDict(frozen=True)

    check: str = Field(description="Name of the check, e.g. 'minimum-threshold'.")
    verdict: Verdict
    message: str = Field(description="What was found, in words a checker understands.")
    cells: list[Cell] = Field(
        default_factory=list, description="Table cells that triggered the finding."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    source: Literal["acro", "tre"] = Field(
        default="tre",
        description="'acro': ACRO's own rule or verdict; 'tre': a check written here.",
    )


class FileChecks(BaseModel):
    """All findings on one file, the worst verdict among them, and a one-line summary."""

    model_config = ConfigDict(frozen=True)

    kind: FileKind
    verdict: Verdict
    findings: list[Finding]
    summary: str

    @classmethod
    def of(cls, kind: FileKind, findings: list[Finding]) -> FileChecks:
        verdict = worst(f.verdict for f in findings)
        flagged = [
            f"{f.check} ({f.verdict.value})" for f in findings if f.verdict is not Verdict.passed
        ]
        if flagged:
            summary = f"{verdict.value}: " + "; ".join(flagged)
        else:
            summary = f"pass: {len(findings)} check(s) passed"
        return cls(kind=kind, verdict=verdict, findings=findings, summary=summary)
