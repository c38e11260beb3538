"""What policy validation reports.

Each finding names the file, the line, the field and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    error = "error"
    warning = "warning"


class Finding(BaseModel):
    """One problem in a site's policy."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    file: str
    line: int | None
    field: str
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.severity}: {self.field}: {self.message}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text


class PolicyError(Exception):
    """The policy has errors; `findings` lists them all, not just the first."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings = tuple(findings)
        errors = [f for f in self.findings if f.severity is Severity.error]
        lines = "\n".join(str(f) for f in errors)
        super().__init__(f"{len(errors)} error(s) in policy:\n{lines}")


def format_loc(loc: Iterable[str | int]) -> str:
    """Render a location like ('permits', 0, 'datasets', 1) as 'permits[0].datasets[1]'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"
