"""EMR ingest: the hospital's tables (CSV, or Parquet) in, one Parquet file per table out.

Invariant: a table is written only if every one of its columns has a declared role
(`emr_schema`), every patient id is in the patient index and no kept column holds a
patient id; rows of opted-out patients are dropped before any value of theirs is
transformed, and no source identifier leaves in clear: patient ids become pseudonyms,
record ids keyed ids, dates are shifted or generalised, birth dates become a top-coded
birth year, direct identifiers are dropped and free text is redacted (`free_text`).
The output bytes depend only on the source rows, the project key and the policy.

Decisions:

* **Birth dates** become `birth_year`, the calendar year of birth; patients aged 90 or
  more on the version's creation date all get (creation year - 90), read "that year or
  earlier" (as HIPAA's Safe Harbor groups ages over 89). The true year is kept even when
  dates are shifted: it does not reveal a patient's offset, whereas a shifted birth date
  next to the true age would.
* **Record ids** (admission, note, ... ids) become `<letter>` + 20 characters of
  HMAC-SHA256 under the project's pseudonym key of "emr-record/<kind>/<id>": the same
  source id gives the same keyed id in every table (joins work), another project gets
  other ids, and the hospital's ids cannot be looked up.
* **Unknown patients** reject the whole table (`UnknownPatient`): a table that names a
  patient the index does not know comes from a mismatched export, and a partial table
  would silently bias analyses. With `--continue-on-error` the other tables still ingest.
* **Dates in notes** move with the patient's offset when the dataset shifts dates, written
  as they were ("3 juni 2024" stays Dutch, a weekday is recomputed), so a note agrees
  with its tables; birth dates, partial dates ("juni 2023") and unreadable ones become
  `<DATE>`, and every date does when the dataset generalises dates.
* **Deny-lists** for free text are built from every row of the tables with direct
  identifiers, opted-out patients' rows included, so that their names are also redacted
  where other patients' notes mention them; nothing else of those rows is read.
* Rows are sorted by every output column (pseudonym, dates, keyed ids, then the rest),
  so the output does not depend on the source's row order.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tre.pseudonym import age_at

from .context import IngestContext
from .emr_schema import DEFAULT_SCHEMA, EmrSchema, IdentifierKind, Role, TableSchema
from .errors import InputRejected, UnknownPatient
from .free_text import DenyList, Entity, Redactor, RedactorConfig

PSEUDONYM_COLUMN = "pseudonym"
BIRTH_YEAR_COLUMN = "birth_year"
TOP_AGE = 90
SUFFIXES = (".csv", ".parquet")
_RECORD_INPUT = "emr-record/{kind}/{id}"
_NATIONAL_NUMBER = re.compile(r"(?<!\d)\d{2}[.]?\d{2}[.]?\d{2}[-.]?\d{3}[.]?\d{2}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def ingest(ctx: IngestContext) -> None:
    """Ingest the EMR export in `ctx.source_dir` with the demo hospital's schema."""
    ingest_tables(ctx, DEFAULT_SCHEMA)


def ingest_tables(ctx: IngestContext, schema: EmrSchema) -> None:
    """Ingest every file of `ctx.source_dir` as a table of `schema`.

    Tables with direct identifiers or birth dates go first (they feed the free-text
    deny-lists), tables with free text last.
    """
    job = _Job(ctx, schema)
    files = sorted(ctx.source_dir.iterdir())
    phases: list[list[Path]] = [[], [], []]
    for path in files:
        table = schema.table(_table_name(path))
        phases[_phase(table)].append(path)
    for label, paths in zip(("emr identities", "emr tables", "emr notes"), phases, strict=True):
        ctx.process(paths, label, job.ingest_file)
    ctx.report.tools.update({"pandas": pd.__version__, "pyarrow": pa.__version__})


def _table_name(path: Path) -> str:
    return path.stem if path.suffix in SUFFIXES else ""


def _phase(table: TableSchema | None) -> int:
    if table is None:
        return 1
    if table.columns_with(Role.free_text):
        return 2
    if table.columns_with(Role.direct_identifier) or table.columns_with(Role.birth_date):
        return 0
    return 1


@dataclass
class _Identities:
    """What the structured tables say about people, for finding them again in text."""

    deny: DenyList = field(default_factory=DenyList)
    birth_dates: dict[str, set[date]] = field(default_factory=dict)
    national_numbers: set[str] = field(default_factory=set)
    tables: int = 0


class _Job:
    def __init__(self, ctx: IngestContext, schema: EmrSchema) -> None:
        self.ctx = ctx
        self.schema = schema
        self.identities = _Identities()
        self.seen: set[str] = set()
        self._redactor: Redactor | None = None

    def ingest_file(self, path: Path) -> None:
        if not path.is_file() or path.suffix not in SUFFIXES:
            raise InputRejected(path, "is not an EMR table (a .csv or .parquet file)")
        name = _table_name(path)
        table = self.schema.table(name)
        if table is None:
            known = ", ".join(sorted(self.schema.tables))
            raise InputRejected(path, f"is not a table of the EMR schema (known: {known})")
        if name in self.seen:
            raise InputRejected(path, f"table '{name}' is given twice (as CSV and Parquet)")
        self.seen.add(name)
        data = self.ctx.read_source(path)
        frame = read_parquet(path, data) if path.suffix == ".parquet" else read_csv(path, data)
        frame = self._check_columns(path, table, frame)
        ids = frame[table.patient_column].str.strip()
        empty = np.flatnonzero((ids == "").to_numpy())
        if empty.size:
            raise InputRejected(path, f"data row {empty[0] + 1} has no patient id")
        pseudonyms = admit_column(self.ctx, path, table.patient_column, ids)
        self._learn(path, table, frame, ids)
        keep = pseudonyms.notna().to_numpy()
        frame, ids, pseudonyms = frame[keep], ids[keep], pseudonyms[keep]
        output = self._transform(path, table, frame, ids, pseudonyms)
        write_table(output, self.ctx.output(f"{name}.parquet"))
        if _phase(table) == 0:
            self.identities.tables += 1

    def _check_columns(self, path: Path, table: TableSchema, frame: pd.DataFrame) -> pd.DataFrame:
        present = list(frame.columns)
        if table.patient_column not in present:
            raise InputRejected(
                path,
                f"has no '{table.patient_column}' column; table '{table.name}' needs it to "
                "link its rows to patients",
            )
        missing = [c for c in table.columns if c not in present]
        if missing:
            raise InputRejected(path, f"lacks declared column(s) {_names(missing)}")
        unknown = [c for c in present if c not in table.columns]
        if unknown and self.schema.unknown_columns == "reject":
            raise InputRejected(
                path,
                f"has column(s) {_names(unknown)} that the EMR schema does not declare for "
                f"table '{table.name}'; a new export column could hold identifiers: declare "
                "its role before ingesting",
            )
        if unknown:
            self.ctx.report.removed[f"emr {table.name}: undeclared columns dropped"] += len(unknown)
        return frame[list(table.columns)]

    # -- identities and free text ---------------------------------------------------------

    def _learn(self, path: Path, table: TableSchema, frame: pd.DataFrame, ids: pd.Series) -> None:
        """Feed the deny-lists and birth dates from every row (opted-out included)."""
        known = self.identities
        kinds = {c: table.columns[c].identifier for c in table.columns_with(Role.direct_identifier)}
        firsts = [c for c, k in kinds.items() if k is IdentifierKind.first_name]
        lasts = [c for c, k in kinds.items() if k is IdentifierKind.last_name]
        if firsts or lasts:
            pairs = zip(
                frame[firsts[0]] if firsts else [""] * len(frame),
                frame[lasts[0]] if lasts else [""] * len(frame),
                strict=True,
            )
            for first, last in set(pairs):
                known.deny.add_person(first, last)
        for column, kind in kinds.items():
            for value in set(frame[column]) - {""}:
                _add_identifier(known, kind, value)
        for column in table.columns_with(Role.birth_date):
            parsed = _parse_dates(path, column, frame[column], date_only=True)
            for pid, value in zip(ids, parsed, strict=True):
                if value is not None:
                    known.birth_dates.setdefault(pid, set()).add(value)

    def _redact(
        self, path: Path, table: str, column: str, texts: pd.Series, ids: pd.Series
    ) -> list[str | None]:
        if not self.identities.tables:
            raise InputRejected(
                path,
                "has free text, which needs the deny-lists built from a table of patient "
                "identifiers, and none was ingested",
            )
        if self._redactor is None:
            patterns = (self.schema.hospital_id_pattern, *self.schema.identifier_patterns)
            config = RedactorConfig(id_patterns=patterns)
            self._redactor = Redactor(self.identities.deny, config)
            self.ctx.report.tools["presidio-analyzer"] = version("presidio-analyzer")
            self.ctx.report.tools["phonenumbers"] = version("phonenumbers")
        shifting = self.ctx.options.dates == "shift"
        counts: Counter[str] = Counter()
        out: list[str | None] = []
        for text, pid in zip(texts, ids, strict=True):
            if not text:
                out.append(None)
                continue
            shift = (lambda d, p=pid: self.ctx.transform_date(d, p)) if shifting else None
            done = self._redactor.redact(
                text, birth_dates=self.identities.birth_dates.get(pid, ()), shift=shift
            )
            counts.update(done.counts)
            out.append(done.text)
        for kind, n in counts.items():
            self.ctx.report.changed[f"{table}: {kind}"] += n
        return out

    # -- columns ----------------------------------------------------------------------------

    def _transform(
        self,
        path: Path,
        table: TableSchema,
        frame: pd.DataFrame,
        ids: pd.Series,
        pseudonyms: pd.Series,
    ) -> pa.Table:
        report = self.ctx.report
        arrays: dict[str, pa.Array] = {}
        sort_first: list[str] = [PSEUDONYM_COLUMN]
        for column, rule in table.columns.items():
            values = frame[column]
            filled = int((values != "").sum())
            label = f"emr {table.name}: {column}"
            role = rule.role
            if role is Role.patient_id:
                arrays[PSEUDONYM_COLUMN] = pa.array(pseudonyms.to_list(), pa.string())
                report.changed[f"{label} pseudonymised"] += filled
            elif role is Role.direct_identifier:
                report.removed[f"{label} dropped"] += filled
            elif role is Role.record_id:
                keyed = keyed_ids(self.ctx, self.schema, rule.record or "record", values)
                arrays[column] = pa.array(keyed, pa.string())
                report.changed[f"{label} keyed"] += filled
            elif role in (Role.date, Role.datetime):
                arrays[column] = self._dates(path, column, values, ids, role is Role.date)
                report.changed[f"{label} {_dates_verb(self.ctx)}"] += filled
                sort_first.append(column)
            elif role is Role.birth_date:
                name = BIRTH_YEAR_COLUMN if column == "birth_date" else f"{column}_year"
                arrays[name] = self._birth_years(path, column, values)
                report.changed[f"{label} to birth year"] += filled
            elif role is Role.number:
                self._check_kept(path, table, column, values, code=True)
                arrays[column] = _numbers(path, column, values)
            elif role in (Role.keep, Role.code):
                self._check_kept(path, table, column, values, code=role is Role.code)
                arrays[column] = pa.array([v or None for v in values], pa.string())
            elif role is Role.free_text:
                redacted = self._redact(path, table.name, column, values, ids)
                arrays[column] = pa.array(redacted, pa.string())
        zones = {arrays[c].type.tz for c in sort_first[1:] if pa.types.is_timestamp(arrays[c].type)}
        if len(zones) > 1:
            raise InputRejected(path, "mixes times with and without a UTC offset")
        sort_first += table.columns_with(Role.record_id)
        keys = sort_first + [c for c in arrays if c not in sort_first]
        out = pa.table(arrays)
        order = pc.sort_indices(out, sort_keys=[(k, "ascending") for k in keys])
        return out.take(order)

    def _dates(
        self, path: Path, column: str, values: pd.Series, ids: pd.Series, date_only: bool
    ) -> pa.Array:
        parsed = _parse_dates(path, column, values, date_only=date_only)
        cache: dict[tuple[str, date], date] = {}
        out: list[date | None] = []
        for pid, value in zip(ids, parsed, strict=True):
            if value is None:
                out.append(None)
                continue
            key = (pid, value)
            if key not in cache:
                try:
                    cache[key] = self.ctx.transform_date(value, pid)
                except ValueError as exc:
                    raise InputRejected(path, f"column '{column}': {exc}") from None
            out.append(cache[key])
        if date_only or self.ctx.options.dates != "shift":
            return pa.array([_as_date(v) for v in out], pa.date32())
        aware = any(v is not None and getattr(v, "tzinfo", None) is not None for v in out)
        return pa.array(out, pa.timestamp("us", tz="UTC" if aware else None))

    def _birth_years(self, path: Path, column: str, values: pd.Series) -> pa.Array:
        parsed = _parse_dates(path, column, values, date_only=True)
        on = self.ctx.version.created
        floor = on.year - TOP_AGE
        years: list[int | None] = []
        for born in parsed:
            if born is None:
                years.append(None)
            elif born > on:
                raise InputRejected(path, f"column '{column}' has a birth date after {on}")
            elif age_at(born, on) >= TOP_AGE:
                self.ctx.report.changed[f"emr: birth years top-coded at age {TOP_AGE}"] += 1
                years.append(floor)
            else:
                years.append(born.year)
        return pa.array(years, pa.int16())

    def _check_kept(
        self, path: Path, table: TableSchema, column: str, values: pd.Series, *, code: bool
    ) -> None:
        """Refuse a kept column that holds patient ids or national numbers (or e-mails)."""
        text = values.astype(str)
        hospital = text.str.contains(self.schema.hospital_id_pattern, regex=True)
        checks: list[tuple[str, pd.Series]] = [
            ("hospital patient ids", hospital | text.str.strip().isin(self.ctx.patients.known)),
            (
                "national register numbers",
                text.str.replace(r"\D", "", regex=True).isin(self.identities.national_numbers)
                & (text.str.len() >= 11),
            ),
        ]
        if not code:
            checks.append(("national register numbers", text.str.contains(_NATIONAL_NUMBER)))
            checks.append(("e-mail addresses", text.str.contains(_EMAIL)))
        for what, hits in checks:
            rows = np.flatnonzero(hits.to_numpy())
            if rows.size:
                raise InputRejected(
                    path,
                    f"column '{column}' holds what looks like {what} (data row "
                    f"{rows[0] + 1}); only '{table.patient_column}' may hold patient ids: "
                    "give the column another role in the EMR schema",
                )


def _add_identifier(known: _Identities, kind: IdentifierKind | None, value: str) -> None:
    deny = known.deny
    if kind is IdentifierKind.first_name:
        deny.add_person(value, None)
    elif kind is IdentifierKind.last_name:
        deny.add_person(None, value)
    elif kind is IdentifierKind.person_name:
        deny.add_person_name(value)
    elif kind is IdentifierKind.national_number:
        deny.add_number(value, Entity.ID)
        known.national_numbers.add(re.sub(r"\D", "", value))
    elif kind is IdentifierKind.address:
        deny.add_address(value)
    elif kind is IdentifierKind.phone:
        deny.add_number(value, Entity.PHONE)
    elif kind is IdentifierKind.email:
        deny.add_text(value, Entity.EMAIL)
    else:
        deny.add_text(value, Entity.ID)
        deny.add_number(value, Entity.ID)


def _dates_verb(ctx: IngestContext) -> str:
    return "shifted" if ctx.options.dates == "shift" else f"generalised to {ctx.options.dates}"


def _as_date(value: date | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value


def _names(columns: list[str]) -> str:
    return ", ".join(repr(c[:40]) for c in columns)


# -- pseudonyms and keyed ids -----------------------------------------------------------------


def admit_column(ctx: IngestContext, path: Path, column: str, ids: pd.Series) -> pd.Series:
    """Pseudonyms of a column of hospital ids (None where the patient opted out).

    The same as `ctx.admit` on every value (unknown ids raise `UnknownPatient`, opted-out
    patients are counted, admitted ones recorded), but each distinct id is looked up and
    pseudonymised once, in one batch, with set operations in C rather than a Python loop.
    """
    codes, uniques = pd.factorize(ids, sort=False)
    distinct: list[str] = uniques.tolist()
    patients = ctx.patients
    if not patients.known.issuperset(distinct):
        first = next(n for n, pid in enumerate(distinct) if not patients.is_known(pid))
        row = int(np.flatnonzero(codes == first)[0])
        raise UnknownPatient(path, f"column '{column}', data row {row + 1},")
    opted = patients.opted_out.intersection(distinct)
    ctx.report.excluded.update(opted)
    admitted = [pid for pid in distinct if pid not in opted] if opted else distinct
    pseudonyms = ctx.keys.pseudonymiser.pseudonymise_many(admitted)
    ctx.report.patients.update(pseudonyms)
    if opted:
        found = iter(pseudonyms)
        lookup = np.array([None if pid in opted else next(found) for pid in distinct], object)
    else:
        lookup = np.array(pseudonyms, dtype=object)
    return pd.Series(lookup[codes], index=ids.index, dtype=object)


def keyed_ids(ctx: IngestContext, schema: EmrSchema, kind: str, values: pd.Series) -> list[Any]:
    """Keyed ids of source record ids of one kind (None for empty values)."""
    stripped = values.str.strip()
    codes, uniques = pd.factorize(stripped.where(stripped != ""), sort=False)
    inputs = [_RECORD_INPUT.format(kind=kind, id=u) for u in uniques]
    prefix = schema.record_prefix(kind)
    keyed = [prefix + p[1:] for p in ctx.keys.pseudonymiser.pseudonymise_many(inputs)]
    lookup = np.array([*keyed, None], dtype=object)  # code -1 (empty) picks the None
    return list(lookup[codes])


# -- reading and writing ----------------------------------------------------------------------


def read_csv(path: Path, data: bytes) -> pd.DataFrame:
    """A CSV file as a frame of strings ("" for empty cells), or `InputRejected`.

    UTF-8 (a byte-order mark is allowed), quoted fields may span lines, and every row
    must have as many fields as the header.
    """
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(
            path, f"is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    if not text.strip():
        raise InputRejected(path, "is empty: a table needs a header row")
    if data.count(b'"') % 2:
        # Arrow would read an unterminated quote (a truncated file) to the end of the data.
        raise InputRejected(path, "is not well-formed CSV (an unterminated quote)")
    header = next(csv.reader(io.StringIO(text)))
    _check_header(path, header)
    ragged: list[int] = []

    def on_ragged(row: Any) -> str:
        ragged.append(int(row.number))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_ragged
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Arrow's message quotes the offending row, which may hold identifiers.
        raise InputRejected(path, "is not well-formed CSV (e.g. an unterminated quote)") from None
    if ragged:
        raise InputRejected(
            path,
            f"has {len(ragged)} row(s) whose number of fields differs from the header's "
            f"{len(header)} (first at line {ragged[0]})",
        )
    return table.to_pandas()


def read_parquet(path: Path, data: bytes) -> pd.DataFrame:
    """A Parquet file as a frame of strings, like `read_csv` (dates in ISO 8601)."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError):
        raise InputRejected(path, "is not a readable Parquet file") from None
    _check_header(path, table.column_names)
    columns = {}
    for name, values in zip(table.column_names, table.columns, strict=True):
        try:
            columns[name] = pc.fill_null(pc.cast(values, pa.string()), "")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InputRejected(path, f"column {name[:40]!r} is not of a scalar type") from None
    return pa.table(columns).to_pandas()


def _check_header(path: Path, names: list[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputRejected(path, f"has duplicated column name(s) {_names(duplicated)}")
    if any(not n.strip() for n in names):
        raise InputRejected(path, "has a column without a name")


def write_table(table: pa.Table, target: Path) -> None:
    """Parquet whose bytes depend only on the table (Parquet footers hold no time stamps)."""
    pq.write_table(table, target, compression="zstd")


def _parse_dates(path: Path, column: str, values: pd.Series, *, date_only: bool) -> list[Any]:
    """ISO 8601 dates (or date-times, with or without a UTC offset) as Python objects,
    None where empty; a column must not mix times with and without an offset."""
    parsed: dict[str, date] = {}
    out: list[Any] = []
    for row, text in enumerate(values, start=1):
        if not text:
            out.append(None)
            continue
        value = parsed.get(text)
        if value is None:
            try:
                moment = datetime.fromisoformat(text.strip())
            except ValueError:
                raise InputRejected(
                    path,
                    f"column '{column}' has a value that is not an ISO 8601 date (data row {row})",
                ) from None
            value = parsed[text] = moment.date() if date_only else moment
        out.append(value)
    if not date_only and len({getattr(v, "tzinfo", None) is None for v in parsed.values()}) > 1:
        raise InputRejected(path, f"column '{column}' mixes times with and without a UTC offset")
    return out


def _numbers(path: Path, column: str, values: pd.Series) -> pa.Array:
    filled = values != ""
    numbers = pd.to_numeric(values.where(filled), errors="coerce")
    bad = np.flatnonzero((numbers.isna() & filled).to_numpy())
    if bad.size:
        raise InputRejected(
            path, f"column '{column}' has a value that is not a number (data row {bad[0] + 1})"
        )
    return pa.array(numbers.to_numpy(dtype="float64"), pa.float64(), from_pandas=True)
