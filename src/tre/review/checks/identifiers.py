"""Identifiers that must never leave: the project's pseudonyms and keyed ids, hospital-style
ids, dates of birth, long free text. Any one found in an output blocks it.

Invariant: `IdentifierIndex.for_project` reads only the project's sealed dataset versions
(their MANIFEST.json and the tables it lists) and fails loudly rather than return an index
that silently misses a table. Everything here is hand-written: ACRO has no identifier
checks. Free text is scanned with regular expressions and checksums, not presidio (see
`docs/reference/disclosure-checks.md`): a checker's table has tens of thousands of cells and
presidio's analyzer costs about 1.2 ms a call, even with its spaCy-free engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tre.settings import Settings

from .model import Cell, Finding, Verdict

CROCKFORD = "0-9A-HJKMNP-TV-Z"
"""Crockford's base32 digits (no I, L, O, U): what pseudonyms and keyed ids are made of."""

_KEYED_CORE = rf"[A-Z][{CROCKFORD}]{{20}}"
KEYED_ID = re.compile(rf"(?<![0-9A-Za-z]){_KEYED_CORE}(?![0-9A-Za-z])")
"""A pseudonym ("P" + 20 digits) or keyed record id (another capital + 20 digits)."""

PSEUDONYM_SHAPE = re.compile(rf"P[{CROCKFORD}]{{20}}")

HOSPITAL_ID = re.compile(r"(?<![0-9A-Za-z])[A-Z]{2,4}[-_]?\d{7,10}(?![0-9A-Za-z])")
"""Letters then seven or more digits (MRN0001234, ADM1234567): how hospital systems number
patients, admissions and notes."""

NHS_NUMBER = re.compile(r"(?<![\w.])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\w.])")
BE_NATIONAL_NUMBER = re.compile(r"(?<![\w.])\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}(?![\w.])")
"""National numbers stand alone: digits glued to letters (an SVG's `id="p9434765919"`, a
hex digest) are not one. Letters then digits are HOSPITAL_ID's."""
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)\d{2})(?!\d)"
)
BIRTH_COLUMN = re.compile(
    r"(?i)(?:^|[^a-z])(?:dob|d\.o\.b|birth|born|geboorte|naissance|geburt)(?:[^a-z]|$)|birth"
)
BIRTH_WORDS = re.compile(r"(?i)\b(?:born|birth|dob|d\.o\.b\.?|geboren|née?)\b")
NEAR_BIRTH = 40
"""Characters either side of a birth word within which a date counts as a date of birth."""

LONG_TEXT = 200
"""A table cell longer than this is free text, and free text is disclosive."""

MAX_LISTED = 50
"""At most this many cells or lines are listed per finding (the count is always given)."""

_TABLE_SUFFIXES = (".csv", ".tsv")
_TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".txt")
_MAX_SCANNED_TEXT = 64 << 20


class IdentifierIndexError(RuntimeError):
    """The identifier index of a project could not be built; the message says which file."""


@dataclass(frozen=True)
class IdentifierIndex:
    """A project's pseudonyms and keyed record ids, for O(1) membership tests."""

    pseudonyms: frozenset[str]
    other: frozenset[str] = frozenset()
    """Other values that must never leave (keyed record ids, sample names, ...)."""
    source: str = "explicit values"

    @classmethod
    def of(cls, pseudonyms: Iterable[str] = (), other: Iterable[str] = ()) -> IdentifierIndex:
        """An index from explicit values (tests, or a site's own list)."""
        return cls(frozenset(pseudonyms), frozenset(other))

    @classmethod
    def for_project(cls, settings: Settings, project: str) -> IdentifierIndex:
        """Every pseudonym and keyed id in the project's sealed dataset versions.

        Reads `<datasets_dir>/<project>/<dataset>/<version>/MANIFEST.json`, every path it
        lists (imaging files are named by pseudonym) and every table and small text file it
        lists (EMR tables hold pseudonyms and keyed record ids). A project without
        versions gives an empty index.
        """
        root = settings.datasets_dir / project
        found: set[str] = set()
        versions = 0
        for manifest in sorted(root.glob("*/*/MANIFEST.json")):
            versions += 1
            found.update(_from_version(manifest))
        pseudonyms = frozenset(v for v in found if v.startswith("P"))
        return cls(
            pseudonyms,
            frozenset(found - pseudonyms),
            source=f"{versions} dataset version(s) of project {project}",
        )

    def __contains__(self, value: object) -> bool:
        return value in self.pseudonyms or value in self.other

    def __len__(self) -> int:
        return len(self.pseudonyms) + len(self.other)

    def known_in(self, text: str) -> set[str]:
        """The indexed values that occur in `text` as whole tokens."""
        hits = {m for m in KEYED_ID.findall(text) if m in self}
        if self.other:
            hits.update(t for t in re.findall(r"[\w.-]+", text) if t in self.other)
        return hits


def _from_version(manifest: Path) -> Iterator[str]:
    version = manifest.parent
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        paths = [str(e["path"]) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentifierIndexError(f"{manifest}: not a readable dataset manifest ({exc})") from exc
    for relative in paths:
        yield from KEYED_ID.findall(relative)
        path = version / relative
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                yield from _from_parquet(path)
            elif suffix in _TEXT_SUFFIXES and path.stat().st_size <= _MAX_SCANNED_TEXT:
                yield from KEYED_ID.findall(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise IdentifierIndexError(
                f"{path}: listed in {manifest.name} but unreadable ({exc})"
            ) from exc


def _from_parquet(path: Path) -> Iterator[str]:
    import pyarrow as pa  # noqa: PLC0415  (only the hosts that read parquet need it)
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(path)
    for field, column in zip(table.schema, table.columns, strict=True):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        unique = pc.unique(column.drop_null())
        keyed = unique.filter(pc.match_substring_regex(unique, _KEYED_CORE))
        for value in keyed.to_pylist():
            yield from KEYED_ID.findall(str(value))


# -- checksums -----------------------------------------------------------------------------


def _nhs_valid(digits: str) -> bool:
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def _be_valid(digits: str) -> bool:
    body, check = int(digits[:9]), int(digits[9:])
    return check in (97 - body % 97, 97 - int("2" + digits[:9]) % 97)


def hospital_ids_in(text: str) -> set[str]:
    """Hospital-style ids, checksummed NHS and Belgian national numbers, e-mail addresses."""
    found = set(HOSPITAL_ID.findall(text)) | set(EMAIL.findall(text))
    for match in NHS_NUMBER.findall(text):
        digits = re.sub(r"\D", "", match)
        if _nhs_valid(digits):
            found.add(match)
    for match in BE_NATIONAL_NUMBER.findall(text):
        digits = re.sub(r"\D", "", match)
        if len(digits) == 11 and _be_valid(digits):
            found.add(match)
    return found


def birth_dates_in(text: str) -> set[str]:
    """Dates within a few words of "born", "birth", "DOB"."""
    found: set[str] = set()
    for word in BIRTH_WORDS.finditer(text):
        window = text[max(0, word.start() - NEAR_BIRTH) : word.end() + NEAR_BIRTH]
        found.update(DATE.findall(window))
    return found


# -- tables ---------------------------------------------------------------------------------


def _cells_matching(
    frame: pd.DataFrame, rows: list[str], predicate: pd.DataFrame
) -> tuple[list[Cell], int]:
    stacked = predicate.to_numpy()
    positions = list(zip(*stacked.nonzero(), strict=True))
    cells = [(rows[r], str(frame.columns[c])) for r, c in positions[:MAX_LISTED]]
    return cells, len(positions)


def _contains_any(frame: pd.DataFrame, values: set[str]) -> pd.DataFrame:
    pattern = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return frame.apply(lambda column: column.str.contains(pattern, regex=True))


def scan_table(frame: pd.DataFrame, rows: list[str], identifiers: IdentifierIndex) -> list[Finding]:
    """Identifier findings on a table whose cells are all strings; `rows` labels its rows.

    One regular-expression pass over all the text finds candidates; only when there are
    any are the cells that hold them located, so a clean 10,000-row table costs one pass.
    """
    header = " ".join(str(c) for c in frame.columns)
    text = header + "\n" + "\n".join("\t".join(r) for r in frame.itertuples(index=False))
    findings: list[Finding] = []

    def located(check: str, values: set[str], message: str) -> None:
        cells, count = _cells_matching(frame, rows, _contains_any(frame, values))
        in_header = [str(c) for c in frame.columns if any(v in str(c) for v in values)]
        cells += [("(header)", c) for c in in_header]
        findings.append(
            Finding(
                check=check,
                verdict=Verdict.block,
                message=message.format(n=count + len(in_header)),
                cells=cells,
                details={"values_found": len(values), "cells_found": count + len(in_header)},
            )
        )

    known = identifiers.known_in(text)
    if known:
        located(
            "project-pseudonyms",
            known,
            "{n} cell(s) hold pseudonyms or keyed record ids of this project's datasets; "
            "row-level identifiers must never leave",
        )
    shaped = {m for m in PSEUDONYM_SHAPE.findall(text) if m not in known}
    shaped = {m for m in shaped if KEYED_ID.search(m)}
    if shaped:
        located(
            "pseudonym-shaped",
            shaped,
            "{n} cell(s) hold values shaped like a TRE pseudonym (P + 20 characters), "
            "possibly of another project; row-level identifiers must never leave",
        )
    hospital = hospital_ids_in(text)
    if hospital:
        located(
            "hospital-identifiers",
            hospital,
            "{n} cell(s) look like hospital or national identifiers or e-mail addresses",
        )
    findings += _birth_columns(frame, rows)
    born = birth_dates_in(text)
    if born:
        located("date-of-birth", born, "{n} cell(s) give a date next to 'born'/'birth'/'DOB'")
    lengths = frame.apply(lambda column: column.str.len()).fillna(0)
    long = lengths > LONG_TEXT
    if bool(long.to_numpy().any()):
        cells, count = _cells_matching(frame, rows, long)
        findings.append(
            Finding(
                check="free-text",
                verdict=Verdict.block,
                message=(
                    f"{count} cell(s) are longer than {LONG_TEXT} characters: free text "
                    "can describe a person and is not an aggregate output"
                ),
                cells=cells,
                details={"longest": int(lengths.to_numpy().max()), "limit": LONG_TEXT},
            )
        )
    return findings


def _birth_columns(frame: pd.DataFrame, rows: list[str]) -> list[Finding]:
    findings = []
    for position, column in enumerate(frame.columns):
        if not BIRTH_COLUMN.search(str(column)):
            continue
        dated = frame.iloc[:, position].str.contains(DATE, regex=True)
        if not bool(dated.any()):
            continue
        hits = list(dated.to_numpy().nonzero()[0])
        findings.append(
            Finding(
                check="date-of-birth",
                verdict=Verdict.block,
                message=(
                    f"column '{column}' holds {len(hits)} date(s) of birth; a birth date "
                    "with anything else singles a person out"
                ),
                cells=[(rows[r], str(column)) for r in hits[:MAX_LISTED]],
                details={"column": str(column), "cells_found": len(hits)},
            )
        )
    return findings


# -- text -----------------------------------------------------------------------------------


def scan_text(text: str, identifiers: IdentifierIndex, *, where: str = "line") -> list[Finding]:
    """Identifier findings on free text (a text file, SVG/PDF text, a results.json)."""
    lines = text.splitlines()
    findings: list[Finding] = []

    def add(check: str, values: set[str], message: str) -> None:
        numbers = [i + 1 for i, line in enumerate(lines) if any(v in line for v in values)]
        findings.append(
            Finding(
                check=check,
                verdict=Verdict.block,
                message=message,
                details={
                    f"{where}s": numbers[:MAX_LISTED],
                    "values_found": len(values),
                    "examples": [_masked(v) for v in sorted(values)[:5]],
                },
            )
        )

    known = identifiers.known_in(text)
    if known:
        add(
            "project-pseudonyms",
            known,
            f"{len(known)} pseudonym(s) or keyed record id(s) of this project's datasets",
        )
    shaped = set(PSEUDONYM_SHAPE.findall(text)) - known
    if shaped:
        add("pseudonym-shaped", shaped, f"{len(shaped)} value(s) shaped like a TRE pseudonym")
    hospital = hospital_ids_in(text)
    if hospital:
        add(
            "hospital-identifiers",
            hospital,
            f"{len(hospital)} value(s) look like hospital or national identifiers or e-mails",
        )
    born = birth_dates_in(text)
    if born:
        add("date-of-birth", born, f"{len(born)} date(s) next to 'born'/'birth'/'DOB'")
    return findings


def _masked(value: str) -> str:
    """Enough of a found value for the checker to find it, not enough to copy it."""
    return value[:3] + "…" if len(value) > 4 else "…"
