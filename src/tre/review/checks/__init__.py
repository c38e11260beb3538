"""Automated disclosure checks on each file of a release request, shown beside the file.

Invariant: `check_file` never raises on any input; its verdict is the worst of its
findings, and a file whose checks could not run is blocked (fail closed), never passed.
ACRO's rules and verdicts are used wherever ACRO has them (`sdc`, `acro_results`);
identifiers, figures, OpenSAFELY's rules and differencing are ours. See
docs/reference/disclosure-checks.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tre.policy import DisclosureProfile

from .acro_results import covering_output, results_findings
from .differencing import differencing_findings
from .figures import figure_findings
from .identifiers import IdentifierIndex, IdentifierIndexError, scan_table, scan_text
from .model import Cell, FileChecks, FileKind, Finding, Verdict, kind_of, worst
from .sdc import table_findings
from .tables import MAX_TABLE_BYTES, read_table

__all__ = [
    "Cell",
    "FileChecks",
    "FileKind",
    "Finding",
    "IdentifierIndex",
    "IdentifierIndexError",
    "Verdict",
    "check_file",
    "kind_of",
    "worst",
]

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 16 << 20


def check_file(
    path: Path,
    *,
    kind: FileKind,
    profile: DisclosureProfile,
    identifiers: IdentifierIndex,
    earlier: Sequence[Path] = (),
) -> FileChecks:
    """Run every check that applies to a file of `kind` at `path`.

    `earlier`: this project's released tables, for differencing. Bad input gives a finding
    that says what is wrong; an unexpected error gives a `checks-error` finding that blocks
    the file until the checks can run.
    """
    try:
        findings = _findings(Path(path), kind, profile, identifiers, earlier)
    except Exception as exc:  # a bug must not let an unchecked file through
        log.exception("disclosure checks failed on %s", path)
        findings = [
            Finding(
                check="checks-error",
                verdict=Verdict.block,
                message=(
                    "the automated checks could not run on this file "
                    f"({type(exc).__name__}); it cannot be approved until they do"
                ),
            )
        ]
    return FileChecks.of(kind, findings)


def _findings(
    path: Path,
    kind: FileKind,
    profile: DisclosureProfile,
    identifiers: IdentifierIndex,
    earlier: Sequence[Path],
) -> list[Finding]:
    if kind is FileKind.table:
        return _table(path, profile, identifiers, earlier)
    if kind is FileKind.figure:
        return figure_findings(path, identifiers)
    if kind is FileKind.acro_results:
        return results_findings(path) + _text_identifiers(path, identifiers)
    if kind is FileKind.text:
        return [
            Finding(
                check="manual-review",
                verdict=Verdict.review,
                message="text is checked for identifiers only; read it for anything else",
            ),
            *_text_identifiers(path, identifiers, strict=True),
        ]
    return [
        Finding(
            check="manual-review",
            verdict=Verdict.review,
            message=f"no automated disclosure checks for '{path.suffix or path.name}' files",
        ),
        *_text_identifiers(path, identifiers),
    ]


def _table(
    path: Path,
    profile: DisclosureProfile,
    identifiers: IdentifierIndex,
    earlier: Sequence[Path],
) -> list[Finding]:
    sheets = read_table(path)
    if isinstance(sheets, Finding):
        # Unreadable as a table: still look for identifiers in whatever bytes it has.
        raw = [] if path.stat().st_size > MAX_TABLE_BYTES else _text_identifiers(path, identifiers)
        return [sheets, *raw]
    findings: list[Finding] = []
    covered = covering_output(path)
    several = len(sheets) > 1
    for sheet in sheets:
        found = table_findings(sheet, profile, acro_covered=covered)
        found += scan_table(sheet.frame, sheet.rows, identifiers) or [_no_identifiers()]
        if several:
            found = [
                f.model_copy(update={"message": f"sheet {sheet.name}: {f.message}"}) for f in found
            ]
        findings += found
    findings += differencing_findings(sheets, earlier, profile)
    return findings


def _no_identifiers() -> Finding:
    return Finding(
        check="identifiers",
        verdict=Verdict.passed,
        message="no pseudonyms, hospital ids, dates of birth or long free text found",
    )


def _text_identifiers(
    path: Path, identifiers: IdentifierIndex, *, strict: bool = False
) -> list[Finding]:
    """Identifier findings on a file read as text (bytes that are not UTF-8 read as Latin-1)."""
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        return [
            Finding(
                check="readable",
                verdict=Verdict.fail,
                message=f"the file is {size >> 20} MiB, too large to search for identifiers",
            )
        ]
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if strict:
            return [
                Finding(
                    check="readable",
                    verdict=Verdict.fail,
                    message="the file is not UTF-8 text",
                ),
                *scan_text(data.decode("latin-1"), identifiers),
            ]
        text = data.decode("latin-1")
    return scan_text(text, identifiers) or [_no_identifiers()]
