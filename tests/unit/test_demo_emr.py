"""Unit tests of the demo EMR: national numbers, people, clinical history and notes."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import date

import pytest

from tre.demo import codes
from tre.demo.emr import DEATH, Admission, ClinicalHistory, make_history
from tre.demo.files import csv_bytes, gzip_bytes, json_bytes
from tre.demo.national_number import check_digits, formatted, is_valid, national_number
from tre.demo.notes import Note, make_notes, render
from tre.demo.people import People, ascii_fold, make_people
from tre.demo.timeline import EXPORT_DATE, HISTORY_START, age_on

SEED = 1234
COUNT = 60

REAL_SNOMED = {
    "393563007": "Glioblastoma multiforme",
    "84114007": "Heart failure",
    "44054006": "Diabetes mellitus type 2",
    "13645005": "Chronic obstructive lung disease",
    "38341003": "Hypertensive disorder, systemic arterial",
    "91302008": "Sepsis",
    "49436004": "Atrial fibrillation",
    "233604007": "Pneumonia",
    "84757009": "Epilepsy",
}
REAL_ATC = {
    "L01AX03": "temozolomide",
    "H02AB02": "dexamethasone",
    "N03AX14": "levetiracetam",
    "C03CA01": "furosemide",
    "A10BA02": "metformin",
    "A04AA01": "ondansetron",
    "C07AB07": "bisoprolol",
    "A10AE04": "insulin glargine",
    "C08CA01": "amlodipine",
    "C09AA05": "ramipril",
    "R03AC02": "salbutamol",
    "R03BB04": "tiotropium bromide",
    "J01CR05": "piperacillin and tazobactam",
    "J01DD04": "ceftriaxone",
    "J01CR02": "amoxicillin and clavulanic acid",
    "B01AF02": "apixaban",
    "B01AB05": "enoxaparin",
    "N02BE01": "paracetamol",
}


@pytest.fixture(scope="module")
def people() -> People:
    return make_people(SEED, COUNT)


@pytest.fixture(scope="module")
def history(people: People) -> ClinicalHistory:
    return make_history(SEED, people)


@pytest.fixture(scope="module")
def notes(people: People, history: ClinicalHistory) -> tuple[Note, ...]:
    return make_notes(SEED, people, history)


# --- national register numbers -------------------------------------------------------


def test_national_number_matches_the_published_example_before_2000() -> None:
    # Born 30 July 1985, day serial 033: 97 - (850730033 mod 97) = 28.
    assert national_number(date(1985, 7, 30), 33) == "85073003328"
    assert formatted("85073003328") == "85.07.30-033.28"


def test_national_number_prefixes_a_2_for_births_from_2000() -> None:
    # Same day and serial in 2017: 97 - (2170730033 mod 97) = 84.
    assert national_number(date(2017, 7, 30), 33) == "17073003384"
    assert check_digits(date(2000, 1, 1), 1) == 97 - 2_000_101_001 % 97
    assert check_digits(date(1999, 12, 31), 1) == 97 - 991_231_001 % 97


def test_a_remainder_of_zero_gives_check_digits_97() -> None:
    assert int("850730061") % 97 == 0
    assert national_number(date(1985, 7, 30), 61) == "85073006197"


@pytest.mark.parametrize("serial", [0, 999, -1])
def test_serial_out_of_range_is_refused(serial: int) -> None:
    with pytest.raises(ValueError, match="serial"):
        check_digits(date(1985, 7, 30), serial)


def test_is_valid_catches_a_changed_digit() -> None:
    assert is_valid("85073003328")
    assert is_valid("17073003384")
    assert not is_valid("85073003329")
    assert not is_valid("8507300332")
    assert not is_valid("8507300332x")


# --- people ---------------------------------------------------------------------------


def test_people_have_unique_well_formed_identifiers(people: People) -> None:
    patients = people.patients
    assert len(patients) == COUNT
    ids = [p.patient_id for p in patients]
    assert ids == sorted(ids)
    assert len(set(ids)) == COUNT
    assert all(re.fullmatch(r"MRN\d{7}", pid) for pid in ids)
    assert len({p.national_number for p in patients}) == COUNT
    assert len({p.email for p in patients}) == COUNT


def test_national_numbers_encode_birth_date_and_sex(people: People) -> None:
    for patient in people.patients:
        number = patient.national_number
        assert is_valid(number), number
        assert number[:6] == f"{patient.birth_date:%y%m%d}"
        serial = int(number[6:9])
        assert serial % 2 == (1 if patient.sex == "M" else 0)
        assert number == national_number(patient.birth_date, serial)


def test_births_from_2000_use_the_2_prefix_rule() -> None:
    born_2000s = [p for p in make_people(SEED, 400).patients if p.birth_date.year >= 2000]
    assert born_2000s, "the age mix must include births from 2000 on"
    for patient in born_2000s:
        body = int("2" + patient.national_number[:9])
        assert int(patient.national_number[9:]) == 97 - body % 97


def test_people_are_adults_with_belgian_contact_details(people: People) -> None:
    for patient in people.patients:
        assert 18 <= age_on(patient.birth_date, EXPORT_DATE) <= 100
        assert re.fullmatch(r"[^,]+, \d{4} .+", patient.address)
        assert re.fullmatch(r"(\+32 |0)[\d /.]+", patient.phone)
        assert patient.email.isascii() and "@" in patient.email
        assert patient.gp in people.general_practitioners


def test_people_depend_on_the_seed_only() -> None:
    assert make_people(SEED, 10) == make_people(SEED, 10)
    other = make_people(SEED + 1, 10)
    assert {p.national_number for p in other.patients}.isdisjoint(
        {p.national_number for p in make_people(SEED, 10).patients}
    )


def test_ascii_fold_drops_accents_only() -> None:
    assert ascii_fold("Océane Léonard-Müller") == "Oceane Leonard-Muller"


# --- clinical history -----------------------------------------------------------------


def test_glioblastoma_cohort_is_a_fifth_of_patients(
    people: People, history: ClinicalHistory
) -> None:
    assert len(history.glioblastoma) == round(COUNT * 0.2)
    with_gbm = {d.patient_id for d in history.diagnoses if d.condition.snomed_code == "393563007"}
    assert with_gbm == set(history.glioblastoma)
    assert set(history.tumour) == set(history.glioblastoma)
    for course in history.tumour.values():
        assert HISTORY_START <= course.mri_on < course.surgery_on < EXPORT_DATE


def test_only_real_snomed_and_atc_codes_are_used(history: ClinicalHistory) -> None:
    for diagnosis in history.diagnoses:
        assert REAL_SNOMED[diagnosis.condition.snomed_code] == diagnosis.condition.description
    for admission in history.admissions:
        assert admission.reason.snomed_code in REAL_SNOMED
    given = {(m.drug.atc_code, m.drug.name) for m in history.administrations}
    assert given <= set(REAL_ATC.items())
    assert {"L01AX03", "H02AB02", "N03AX14"} <= {atc for atc, _ in given}


def test_admissions_are_ordered_in_time_and_end_at_death(history: ClinicalHistory) -> None:
    by_patient: dict[str, list[Admission]] = {}
    for admission in history.admissions:
        assert admission.admitted < admission.discharged
        assert HISTORY_START <= admission.admitted.date() < EXPORT_DATE
        assert admission.discharged.date() <= EXPORT_DATE
        by_patient.setdefault(admission.patient_id, []).append(admission)
    for admissions in by_patient.values():
        admissions.sort(key=lambda a: a.admitted)
        for before, after in itertools.pairwise(admissions):
            assert before.outcome != DEATH
            assert before.discharged < after.admitted
    assert {a.outcome for a in history.admissions} >= {"home", DEATH}


def test_some_admissions_are_30_day_readmissions() -> None:
    people = make_people(SEED, 150)
    history = make_history(SEED, people)
    readmissions = history.readmissions(30)
    assert len(readmissions) >= 5
    assert any(a.reason == codes.GLIOBLASTOMA for a in readmissions)


def test_drugs_are_given_during_their_admission(history: ClinicalHistory) -> None:
    admissions = {a.admission_id: a for a in history.admissions}
    assert history.administrations
    for given in history.administrations:
        admission = admissions[given.admission_id]
        assert admission.patient_id == given.patient_id
        assert admission.admitted < given.given_at < admission.discharged
    ids = [m.administration_id for m in history.administrations]
    assert len(ids) == len(set(ids))


def test_temozolomide_only_for_the_glioblastoma_cohort(history: ClinicalHistory) -> None:
    on_temozolomide = {
        m.patient_id for m in history.administrations if m.drug == codes.TEMOZOLOMIDE
    }
    assert on_temozolomide
    assert on_temozolomide <= set(history.glioblastoma)


def test_history_depends_on_the_seed_only(people: People, history: ClinicalHistory) -> None:
    assert make_history(SEED, people) == history
    assert make_history(SEED + 1, people).admissions != history.admissions


# --- notes ----------------------------------------------------------------------------


def test_every_reported_identifier_is_in_the_note_text(notes: tuple[Note, ...]) -> None:
    for note in notes:
        assert note.identifiers
        for _kind, value in note.identifiers:
            assert value in note.text, (note.note_id, value)


def test_notes_mention_each_kind_of_direct_identifier(
    people: People, notes: tuple[Note, ...]
) -> None:
    for patient in people.patients:
        own = [n for n in notes if n.patient_id == patient.patient_id]
        text = "\n".join(n.text for n in own)
        assert patient.patient_id in text
        assert patient.national_number in text or formatted(patient.national_number) in text
        assert patient.last_name in text or patient.last_name.upper() in text
        assert patient.phone in text
        assert patient.gp.name in text or patient.gp.last_name in text
        kinds = Counter(kind for n in own for kind, _ in n.identifiers)
        assert kinds["birth_date"] and kinds["visit_date"] and kinds["name"]


def test_glioblastoma_patients_get_an_mdt_note(
    history: ClinicalHistory, notes: tuple[Note, ...]
) -> None:
    mdt = {n.patient_id for n in notes if n.note_type == "mdt"}
    assert mdt == set(history.glioblastoma)


def test_notes_are_unique_and_attached_to_real_admissions(
    history: ClinicalHistory, notes: tuple[Note, ...]
) -> None:
    admissions = {a.admission_id: a for a in history.admissions}
    assert len({n.note_id for n in notes}) == len(notes)
    for note in notes:
        assert admissions[note.admission_id].patient_id == note.patient_id
        assert note.written_at.date() <= EXPORT_DATE


def test_render_reports_only_identifying_fields() -> None:
    text, found = render(
        "{name} on {ward} ({name})",
        {"name": ("name", "Anna Peeters"), "ward": (None, "Cardiology")},
    )
    assert text == "Anna Peeters on Cardiology (Anna Peeters)"
    assert found == (("name", "Anna Peeters"),)


# --- deterministic encodings ------------------------------------------------------------


def test_csv_bytes_use_lf_and_utf8() -> None:
    data = csv_bytes(["a", "b"], [("é", "x,y"), ("multi\nline", None)])
    assert data == 'a,b\né,"x,y"\n"multi\nline",\n'.encode()
    assert b"\r" not in data


def test_json_bytes_are_canonical() -> None:
    assert json_bytes({"b": 1, "a": [1, 2]}) == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_gzip_bytes_have_no_time_and_no_name() -> None:
    data = gzip_bytes(b"hello")
    assert data == gzip_bytes(b"hello")
    flags, mtime = data[3], data[4:8]
    assert flags & 0x08 == 0  # FNAME
    assert mtime == b"\0\0\0\0"
