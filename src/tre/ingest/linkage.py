"""Linkage tables (`samples.csv`, `slides.csv`): a source id per row, and the patient it is.

Invariant: every row returned has a non-empty id and patient id, ids are unique, and
any problem stops the run with an `IngestError` naming the table and the row — a
table that links ambiguously would link files to the wrong patient.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .context import IngestContext
from .errors import IngestError


def read_linkage_table(ctx: IngestContext, table: Path, key: str) -> dict[str, dict[str, str]]:
    """`key` value → the row (values stripped), for a CSV with `key` and `patient_id` columns."""
    try:
        text = ctx.read_source(table).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"{table}: {table.name} is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {key, "patient_id"} - set(reader.fieldnames or [])
    if missing:
        raise IngestError(f"{table}: no column {', '.join(sorted(missing))}")
    rows: dict[str, dict[str, str]] = {}
    noun = key.removesuffix("_id").replace("_", " ")
    for line, record in enumerate(reader, start=2):
        row = {name: (value or "").strip() for name, value in record.items() if name}
        if not row.get(key) or not row.get("patient_id"):
            raise IngestError(f"{table}: row {line} has no {key} or no patient_id")
        if row[key] in rows:
            raise IngestError(f"{table}: row {line} repeats a {noun} id of an earlier row")
        rows[row[key]] = row
    return rows
