"""The EMR silo: the hospital's patient, diagnosis, admission, medication and note tables.

CSV files under `emr/`, rows sorted by their id, UTF-8 with `\\n` line endings; every
identifying column is declared in `PLANTED.json` and every identifier inside a note's
text is listed there one by one.
"""

from __future__ import annotations

from .build import SiloBuild
from .emr import ClinicalHistory
from .files import write_csv
from .notes import Note
from .people import People
from .planted import IdentifierKind

SOURCE = "synthetic"

_PATIENT_COLUMNS: tuple[tuple[str, IdentifierKind | None], ...] = (
    ("patient_id", "patient_id"),
    ("last_name", "last_name"),
    ("first_name", "first_name"),
    ("sex", None),
    ("birth_date", "birth_date"),
    ("national_number", "national_number"),
    ("address", "address"),
    ("phone", "phone"),
    ("email", "email"),
    ("gp_name", "clinician_name"),
    ("gp_phone", "phone"),
)


def _timestamp(value: object) -> str:
    return f"{value:%Y-%m-%dT%H:%M}"


def write_emr(
    build: SiloBuild, people: People, history: ClinicalHistory, notes: tuple[Note, ...]
) -> None:
    everyone = [p.patient_id for p in people.patients]

    path = "emr/patients.csv"
    write_csv(
        build.path(path),
        [name for name, _ in _PATIENT_COLUMNS],
        (
            (
                p.patient_id, p.last_name, p.first_name, p.sex, p.birth_date.isoformat(),
                p.national_number, p.address, p.phone, p.email, p.gp.name, p.gp.phone,
            )
            for p in people.patients
        ),
    )  # fmt: skip
    build.record(path, "emr", SOURCE, everyone)
    for column, kind in _PATIENT_COLUMNS:
        if kind is not None:
            build.plant_column(path, column, kind)

    path = "emr/diagnoses.csv"
    diagnoses = sorted(history.diagnoses, key=lambda d: d.diagnosis_id)
    write_csv(
        build.path(path),
        ["diagnosis_id", "patient_id", "diagnosed_on", "snomed_code", "description"],
        (
            (d.diagnosis_id, d.patient_id, d.diagnosed_on.isoformat(),
             d.condition.snomed_code, d.condition.description)
            for d in diagnoses
        ),
    )  # fmt: skip
    build.record(path, "emr", SOURCE, (d.patient_id for d in diagnoses))
    build.plant_column(path, "patient_id", "patient_id")
    build.plant_column(path, "diagnosed_on", "visit_date")

    path = "emr/admissions.csv"
    admissions = sorted(history.admissions, key=lambda a: a.admission_id)
    write_csv(
        build.path(path),
        ["admission_id", "patient_id", "admitted", "discharged", "ward",
         "reason_snomed_code", "discharge_outcome"],
        (
            (a.admission_id, a.patient_id, _timestamp(a.admitted), _timestamp(a.discharged),
             a.ward, a.reason.snomed_code, a.outcome)
            for a in admissions
        ),
    )  # fmt: skip
    build.record(path, "emr", SOURCE, (a.patient_id for a in admissions))
    build.plant_column(path, "patient_id", "patient_id")
    build.plant_column(path, "admitted", "visit_date")
    build.plant_column(path, "discharged", "visit_date")

    path = "emr/medications.csv"
    given = sorted(history.administrations, key=lambda m: m.administration_id)
    write_csv(
        build.path(path),
        ["administration_id", "patient_id", "admission_id", "administered_at", "atc_code",
         "drug", "dose", "unit", "route"],
        (
            (m.administration_id, m.patient_id, m.admission_id, _timestamp(m.given_at),
             m.drug.atc_code, m.drug.name, m.drug.dose, m.drug.unit, m.drug.route)
            for m in given
        ),
    )  # fmt: skip
    build.record(path, "emr", SOURCE, (m.patient_id for m in given))
    build.plant_column(path, "patient_id", "patient_id")
    build.plant_column(path, "administered_at", "visit_date")

    path = "emr/notes.csv"
    ordered = sorted(notes, key=lambda n: n.note_id)
    write_csv(
        build.path(path),
        ["note_id", "patient_id", "admission_id", "written_at", "note_type", "author", "text"],
        (
            (n.note_id, n.patient_id, n.admission_id, _timestamp(n.written_at), n.note_type,
             n.author, n.text)
            for n in ordered
        ),
    )  # fmt: skip
    build.record(path, "emr", SOURCE, (n.patient_id for n in ordered))
    build.plant_column(path, "patient_id", "patient_id")
    build.plant_column(path, "written_at", "visit_date")
    build.plant_column(path, "author", "clinician_name")
    for note in ordered:
        for kind, value in note.identifiers:
            build.plant(path, f"csv:note_id={note.note_id}/text", kind, value, note.patient_id)
