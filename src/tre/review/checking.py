"""The seam between the service and the automated disclosure checks (`tre.review.checks`).

The service asks a `Checker` for a file's kind and for the checks' result on the
stored copy; `DisclosureChecks` is the real one and imports the checks package only
when first used, so the service's domain does not depend on pandas or acro at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tre.policy import DisclosureProfile
from tre.settings import Settings

from .models import Verdict


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    detail: dict[str, Any]
    """The checks' full result as JSON (what the checker UI shows beside the file)."""


class Checker(Protocol):
    def kind_of(self, filename: str) -> str:
        """table, figure, acro_results, text or other."""
        ...

    def check(
        self,
        path: Path,
        *,
        kind: str,
        profile: DisclosureProfile,
        project: str,
        earlier: Sequence[Path],
    ) -> CheckResult:
        """Run the checks on the stored copy at `path`; `earlier`: this project's released
        files, for differencing."""
        ...


@dataclass
class DisclosureChecks:
    """The real checks, from `tre.review.checks`, with one identifier index per project."""

    settings: Settings
    _indexes: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _module() -> Any:
        return importlib.import_module("tre.review.checks")

    def kind_of(self, filename: str) -> str:
        kind = self._module().kind_of(filename)
        return str(getattr(kind, "value", kind))

    def check(
        self,
        path: Path,
        *,
        kind: str,
        profile: DisclosureProfile,
        project: str,
        earlier: Sequence[Path],
    ) -> CheckResult:
        checks = self._module()
        index = self._indexes.get(project)
        if index is None:
            index = self._indexes[project] = checks.IdentifierIndex.for_project(
                self.settings, project
            )
        result = checks.check_file(
            path,
            kind=checks.FileKind(kind),
            profile=profile,
            identifiers=index,
            earlier=list(earlier),
        )
        verdict = result.verdict
        return CheckResult(
            verdict=Verdict(str(getattr(verdict, "value", verdict))),
            detail=result.model_dump(mode="json"),
        )
