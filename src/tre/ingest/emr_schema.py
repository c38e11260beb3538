"""The EMR export's tables as data: every column of every table has exactly one declared role,
and a column without one is refused (a new export column could be an identifier).

Roles are written as short strings (`"patient_id"`, `"direct_identifier:last_name"`,
`"record_id:admission"`, ...) so the mapping can live in a policy file later; `parse_role`
turns them into `ColumnRule`s and refuses anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal


class Role(StrEnum):
    """What ingest does with one column."""

    patient_id = "patient_id"
    """The hospital patient id: admitted through the context, written as `pseudonym`."""
    direct_identifier = "direct_identifier"
    """Dropped; its values feed the free-text deny-lists (by `IdentifierKind`)."""
    date = "date"
    """A calendar date: shifted or generalised per patient (`ctx.transform_date`)."""
    datetime = "datetime"
    """A date and time: shifted (time of day kept) or generalised to a date."""
    birth_date = "birth_date"
    """Replaced by `birth_year`, top-coded at 90 years of age (see `emr`)."""
    code = "code"
    """A terminology code (SNOMED CT, ATC): kept as text."""
    record_id = "record_id"
    """A source record id: replaced by a keyed id of its record kind, so joins still work."""
    keep = "keep"
    """Another clinical value: kept as text."""
    number = "number"
    """A clinical quantity: kept as a floating-point number."""
    free_text = "free_text"
    """Free text: redacted by `tre.ingest.free_text`."""


class IdentifierKind(StrEnum):
    """What a direct identifier column holds: it decides how its values are sought in text."""

    first_name = "first_name"
    last_name = "last_name"
    person_name = "person_name"
    """A whole name, possibly with a title ("Dr. Nicole Deconinck")."""
    national_number = "national_number"
    address = "address"
    phone = "phone"
    email = "email"
    other = "other"
    """Dropped, and looked for in text as a whole value."""


@dataclass(frozen=True)
class ColumnRule:
    role: Role
    identifier: IdentifierKind | None = None
    """For `direct_identifier`: what the values are."""
    record: str | None = None
    """For `record_id`: the kind of record ("admission"), shared by every table that refers
    to it, so the same source id gets the same keyed id in each."""


_RECORD_KIND = re.compile(r"[a-z][a-z_]{0,31}")


def parse_role(text: str) -> ColumnRule:
    """A `ColumnRule` from its string form; `ValueError` saying what is allowed otherwise."""
    name, _, argument = text.partition(":")
    try:
        role = Role(name)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown column role {name!r} (allowed: {allowed})") from None
    if role is Role.direct_identifier:
        try:
            return ColumnRule(role, identifier=IdentifierKind(argument or "other"))
        except ValueError:
            allowed = ", ".join(k.value for k in IdentifierKind)
            raise ValueError(
                f"unknown identifier kind {argument!r} in {text!r} (allowed: {allowed})"
            ) from None
    if role is Role.record_id:
        if not _RECORD_KIND.fullmatch(argument):
            raise ValueError(
                f"{text!r}: a record_id role names its record kind in lower case, "
                "e.g. 'record_id:admission'"
            )
        return ColumnRule(role, record=argument)
    if argument:
        raise ValueError(f"{text!r}: role {role.value!r} takes no argument")
    return ColumnRule(role)


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: Mapping[str, ColumnRule]

    @property
    def patient_column(self) -> str:
        return next(c for c, r in self.columns.items() if r.role is Role.patient_id)

    def columns_with(self, role: Role) -> list[str]:
        return [c for c, r in self.columns.items() if r.role is role]


@dataclass(frozen=True)
class EmrSchema:
    """The tables an EMR export may hold, and how strict ingest is about them."""

    tables: Mapping[str, TableSchema]
    record_prefixes: Mapping[str, str] = field(default_factory=dict)
    """One capital letter per record kind, put in front of its keyed ids (never "P",
    which starts patient pseudonyms); kinds not listed get "R"."""
    unknown_columns: Literal["reject", "drop"] = "reject"
    """A column the schema does not declare: refuse the file (default) or drop the column."""
    hospital_id_pattern: str = r"MRN\d{7}"
    """What the hospital's patient ids look like; such values outside the patient id
    column are refused, and such strings in free text are redacted."""
    identifier_patterns: tuple[str, ...] = (r"(?:ADM|NT|DX)\d{7}", r"MAR\d{8}")
    """Other source ids (admissions, notes, ...) that must not survive in free text."""

    def table(self, name: str) -> TableSchema | None:
        return self.tables.get(name)

    def record_prefix(self, kind: str) -> str:
        return self.record_prefixes.get(kind, "R")


def build_schema(
    tables: Mapping[str, Mapping[str, str]],
    *,
    record_prefixes: Mapping[str, str] | None = None,
    unknown_columns: Literal["reject", "drop"] = "reject",
    hospital_id_pattern: str = r"MRN\d{7}",
    identifier_patterns: tuple[str, ...] = (r"(?:ADM|NT|DX)\d{7}", r"MAR\d{8}"),
) -> EmrSchema:
    """An `EmrSchema` from plain data: table -> {column -> role string}.

    Each table needs exactly one `patient_id` column; prefixes are single capital letters
    other than "P". Errors name the table and column.
    """
    parsed: dict[str, TableSchema] = {}
    for table, columns in tables.items():
        rules: dict[str, ColumnRule] = {}
        for column, role in columns.items():
            try:
                rules[column] = parse_role(role)
            except ValueError as exc:
                raise ValueError(f"EMR schema, table {table!r}, column {column!r}: {exc}") from None
        ids = [c for c, r in rules.items() if r.role is Role.patient_id]
        if len(ids) != 1:
            raise ValueError(
                f"EMR schema, table {table!r}: needs exactly one 'patient_id' column, "
                f"found {len(ids)}"
            )
        parsed[table] = TableSchema(table, MappingProxyType(rules))
    prefixes = dict(record_prefixes or {})
    for kind, prefix in prefixes.items():
        if not re.fullmatch(r"[A-Z]", prefix) or prefix == "P":
            raise ValueError(
                f"EMR schema, record kind {kind!r}: prefix must be one capital letter other "
                "than 'P' (which starts patient pseudonyms)"
            )
    re.compile(hospital_id_pattern)
    for pattern in identifier_patterns:
        re.compile(pattern)
    return EmrSchema(
        tables=MappingProxyType(parsed),
        record_prefixes=MappingProxyType(prefixes),
        unknown_columns=unknown_columns,
        hospital_id_pattern=hospital_id_pattern,
        identifier_patterns=identifier_patterns,
    )


DEMO_TABLES: Mapping[str, Mapping[str, str]] = {
    "patients": {
        "patient_id": "patient_id",
        "last_name": "direct_identifier:last_name",
        "first_name": "direct_identifier:first_name",
        "sex": "keep",
        "birth_date": "birth_date",
        "national_number": "direct_identifier:national_number",
        "address": "direct_identifier:address",
        "phone": "direct_identifier:phone",
        "email": "direct_identifier:email",
        "gp_name": "direct_identifier:person_name",
        "gp_phone": "direct_identifier:phone",
    },
    "diagnoses": {
        "diagnosis_id": "record_id:diagnosis",
        "patient_id": "patient_id",
        "diagnosed_on": "date",
        "snomed_code": "code",
        "description": "keep",
    },
    "admissions": {
        "admission_id": "record_id:admission",
        "patient_id": "patient_id",
        "admitted": "datetime",
        "discharged": "datetime",
        "ward": "keep",
        "reason_snomed_code": "code",
        "discharge_outcome": "keep",
    },
    "medications": {
        "administration_id": "record_id:administration",
        "patient_id": "patient_id",
        "admission_id": "record_id:admission",
        "administered_at": "datetime",
        "atc_code": "code",
        "drug": "keep",
        "dose": "number",
        "unit": "keep",
        "route": "keep",
    },
    "notes": {
        "note_id": "record_id:note",
        "patient_id": "patient_id",
        "admission_id": "record_id:admission",
        "written_at": "datetime",
        "note_type": "keep",
        "author": "direct_identifier:person_name",
        "text": "free_text",
    },
}
"""The demo hospital's EMR export (`tre demo data`, `src/tre/demo/emr_export.py`)."""

DEFAULT_SCHEMA = build_schema(
    DEMO_TABLES,
    record_prefixes={"admission": "A", "diagnosis": "D", "administration": "M", "note": "N"},
)
