"""The EMR schema: every column has one declared role, and a malformed schema says where."""

from __future__ import annotations

import pytest

from tre.ingest.emr_schema import (
    DEFAULT_SCHEMA,
    DEMO_TABLES,
    ColumnRule,
    IdentifierKind,
    Role,
    build_schema,
    parse_role,
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("patient_id", ColumnRule(Role.patient_id)),
        (
            "direct_identifier:last_name",
            ColumnRule(Role.direct_identifier, IdentifierKind.last_name),
        ),
        ("direct_identifier", ColumnRule(Role.direct_identifier, IdentifierKind.other)),
        ("record_id:admission", ColumnRule(Role.record_id, record="admission")),
        ("birth_date", ColumnRule(Role.birth_date)),
        ("free_text", ColumnRule(Role.free_text)),
    ],
)
def test_roles_are_read_from_their_string_form(text: str, rule: ColumnRule) -> None:
    assert parse_role(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("secret", "unknown column role 'secret' (allowed: patient_id, direct_identifier,"),
        ("direct_identifier:shoe_size", "unknown identifier kind 'shoe_size'"),
        ("record_id", "a record_id role names its record kind"),
        ("record_id:Admission", "a record_id role names its record kind"),
        ("keep:yes", "role 'keep' takes no argument"),
    ],
)
def test_a_bad_role_says_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_role(text)


def test_a_schema_names_the_table_and_column_it_refuses() -> None:
    with pytest.raises(ValueError, match="table 'labs', column 'value': unknown column role"):
        build_schema({"labs": {"patient_id": "patient_id", "value": "kept"}})
    with pytest.raises(ValueError, match="table 'labs': needs exactly one 'patient_id' column"):
        build_schema({"labs": {"value": "keep"}})
    with pytest.raises(ValueError, match="prefix must be one capital letter other than 'P'"):
        build_schema(DEMO_TABLES, record_prefixes={"note": "P"})


def test_the_demo_schema_declares_every_column_of_the_demo_export() -> None:
    assert set(DEFAULT_SCHEMA.tables) == {
        "patients",
        "diagnoses",
        "admissions",
        "medications",
        "notes",
    }
    patients = DEFAULT_SCHEMA.tables["patients"]
    assert patients.patient_column == "patient_id"
    assert patients.columns_with(Role.birth_date) == ["birth_date"]
    dropped = set(patients.columns_with(Role.direct_identifier))
    assert dropped == {
        "last_name", "first_name", "national_number", "address", "phone", "email", "gp_name",
        "gp_phone",
    }  # fmt: skip
    notes = DEFAULT_SCHEMA.tables["notes"]
    assert notes.columns["author"].role is Role.direct_identifier
    assert (
        notes.columns["admission_id"] == DEFAULT_SCHEMA.tables["admissions"].columns["admission_id"]
    )
    prefixes = {
        DEFAULT_SCHEMA.record_prefix(k)
        for k in ("admission", "diagnosis", "administration", "note")
    }
    assert len(prefixes) == 4 and "P" not in prefixes
    assert DEFAULT_SCHEMA.record_prefix("unknown") == "R"
