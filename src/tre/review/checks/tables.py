"""Reading a submitted table (CSV, TSV, XLSX) into labelled cells, without trusting it.

Invariant: reading never raises on bad input; it returns either the sheets as all-string
frames with row labels, or a finding that says what was wrong (empty, binary, not UTF-8,
unparseable, too large, hidden sheets). Hand-written: ACRO checks tables it builds itself
and has no reader for finished ones.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .model import Finding, Verdict

MAX_TABLE_BYTES = 32 << 20
"""Larger tables are not read: aggregate outputs are small, and a big one is row-level."""

REDACTED = re.compile(
    r"(?i)^\s*(?:\[?redacted\]?|\*+|<\s*=?\s*\d+|≤\s*\d+|suppressed|supp\.?|c|x|s)\s*$"
)
"""How people mark a suppressed cell: [REDACTED], *, <8, <=7, c (ONS), x, s."""

MISSING = re.compile(r"(?i)^\s*(?:|na|n/a|nan|null|none|-|\.)\s*$")

LABEL_NAMES = re.compile(
    r"(?i)(?:^|_|\b)(?:year|age|band|group|category|code|id|name|label|period|month|week|"
    r"quarter|date|sex|gender|region|site|level|stage|grade|unnamed: ?\d+)(?:$|_|\b)"
)
"""Column names that label rows even when their values are numbers (year 2024, age 40)."""

STATISTIC_NAMES = re.compile(
    r"(?i)(?:^|_|\b)(?:mean|median|avg|average|sd|std|se|sem|iqr|q1|q3|p\d+|percent|pct|"
    r"%|rate|ratio|prop|proportion|share|min|max|ci|lower|upper|p_?value|or|hr|rr|beta|"
    r"coef|estimate|sum|total_value)(?:$|_|\b)"
)

FORMULA = re.compile(r"^\s*[=+@\-]\s*[A-Za-z(@]")
"""A cell a spreadsheet would run: =HYPERLINK(...), +cmd|..., @SUM(...) (CSV injection)."""


@dataclass
class Sheet:
    """One table: all cells as strings, labels for its rows, and its column roles."""

    name: str
    frame: pd.DataFrame
    rows: list[str]
    labels: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    statistics: list[str] = field(default_factory=list)
    redacted: dict[str, pd.Series] = field(default_factory=dict)
    """Per value column: which cells are marked as suppressed."""
    numeric: dict[str, pd.Series] = field(default_factory=dict)
    """Per value column: the cells as numbers, NaN where redacted, missing or not a number."""

    @property
    def values(self) -> list[str]:
        return self.counts + self.statistics


def _problem(message: str, **details: object) -> Finding:
    return Finding(check="readable", verdict=Verdict.fail, message=message, details=details)


def read_table(path: Path) -> list[Sheet] | Finding:
    """The sheets of a table file, or a `readable` finding saying why it cannot be checked."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return _problem(f"the file cannot be read ({exc.strerror})")
    if size == 0:
        return _problem("the file is empty")
    if size > MAX_TABLE_BYTES:
        return _problem(
            f"the file is {size / 2**20:.0f} MiB, more than the {MAX_TABLE_BYTES >> 20} MiB "
            "an aggregate table needs; row-level data cannot be released",
            size=size,
        )
    if path.suffix.lower() == ".xlsx":
        return _read_xlsx(path)
    return _read_delimited(path)


def _read_delimited(path: Path) -> list[Sheet] | Finding:
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        return _problem("the file is binary, not a delimited text table")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _problem(f"the file is not UTF-8 text (byte {exc.start})")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff(text)
    return _from_rows(path.name, text, delimiter)


def _sniff(text: str) -> str:
    head = text[:8192]
    first = head.splitlines()[0] if head.splitlines() else ""
    if "," not in first and ";" in first:
        return ";"  # Excel in continental Europe
    return ","


def _from_rows(name: str, text: str, delimiter: str) -> list[Sheet] | Finding:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return _problem(f"the file is not valid CSV: {exc}")
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return _problem("the file has no rows")
    width = len(rows[0])
    ragged = [i + 1 for i, r in enumerate(rows) if len(r) != width]
    if ragged:
        return _problem(
            f"row(s) {', '.join(map(str, ragged[:10]))} have a different number of fields "
            f"than the header ({width})",
            rows=ragged[:50],
        )
    frame = pd.DataFrame(rows[1:], columns=_unique(rows[0]), dtype=object)
    return [classify(name, frame)]


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, raw in enumerate(header):
        name = raw.strip() or f"column {i + 1}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _read_xlsx(path: Path) -> list[Sheet] | Finding:
    import zipfile  # noqa: PLC0415

    import openpyxl  # type: ignore[import-untyped]  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles it ignores
            book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        return _problem(f"the file is not a readable XLSX workbook ({exc})")
    try:
        hidden = [ws.title for ws in book.worksheets if ws.sheet_state != "visible"]
        if hidden:
            return _problem(
                f"hidden sheet(s) {', '.join(hidden)}: a checker would not see them; "
                "delete or unhide them",
                hidden=hidden,
            )
        sheets: list[Sheet] = []
        for ws in book.worksheets:
            rows = [
                ["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)
            ]
            rows = [r for r in rows if any(c.strip() for c in r)]
            if not rows:
                continue
            width = max(len(r) for r in rows)
            rows = [r + [""] * (width - len(r)) for r in rows]
            frame = pd.DataFrame(rows[1:], columns=_unique(rows[0]), dtype=object)
            name = ws.title if len(book.worksheets) > 1 else path.name
            sheets.append(classify(name, frame))
    finally:
        book.close()
    if not sheets:
        return _problem("the workbook has no cells")
    return sheets


def numbers(column: pd.Series) -> pd.Series:
    """A column's values as floats (thousands separators allowed); NaN where not a number."""
    if bool(column.str.contains(",", regex=False).any()):
        column = column.str.replace(r"(?<=\d),(?=\d{3}\b)", "", regex=True)
    return pd.to_numeric(column.str.strip(), errors="coerce")


def classify(name: str, frame: pd.DataFrame) -> Sheet:
    """Decide which columns label rows, which hold counts and which hold other statistics.

    A column is a label if its name says so (year, age, group, ...) or most of its values
    are not numbers; a value column holds counts if every value is a whole number >= 0 and
    its name does not name a statistic (mean, sd, %, ...); other value columns hold
    statistics.
    """
    frame = frame.astype(str)
    sheet = Sheet(name=name, frame=frame, rows=[])
    for column in frame.columns:
        values = frame[column]
        redacted = values.str.match(REDACTED)
        numeric = numbers(values).where(~redacted)
        present = int((~redacted & ~values.str.match(MISSING)).sum())
        share = int(numeric.notna().sum()) / present if present else 0.0
        if LABEL_NAMES.search(str(column)) and not STATISTIC_NAMES.search(str(column)):
            sheet.labels.append(column)
            continue
        if share < 0.5:
            sheet.labels.append(column)
            continue
        sheet.redacted[column], sheet.numeric[column] = redacted, numeric
        if not STATISTIC_NAMES.search(str(column)) and bool(
            ((numeric.dropna() % 1 == 0) & (numeric.dropna() >= 0)).all()
        ):
            sheet.counts.append(column)
        else:
            sheet.statistics.append(column)
    if sheet.labels:
        joined = frame[sheet.labels[0]].str.strip()
        for column in sheet.labels[1:]:
            joined = joined + " / " + frame[column].str.strip()
        sheet.rows = joined.tolist()
    else:
        sheet.rows = [f"row {i + 1}" for i in range(len(frame))]
    return sheet
