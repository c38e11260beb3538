"""Free-text clinical notes that mention the very identifiers a de-identifier must find.

Every identifier a note's text contains is reported with the note, exactly as it is
written, so `PLANTED.json` can list it; notes are a pure function of the seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from random import Random

from . import seeds
from .emr import DEATH, Admission, ClinicalHistory
from .national_number import formatted
from .people import Clinician, Patient, People
from .planted import IdentifierKind
from .timeline import age_on

Fields = dict[str, tuple[IdentifierKind | None, str]]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
}

_ADMISSION_NOTES = (
    "Admission note {admitted_iso} {admitted_time}\n"
    "Patient: {full_name} ({mrn}), born {dob_dmy}, NRN {nn_dotted}.\n"
    "Admitted to {ward} for {reason}. Referred by the GP, {gp_name} (tel. {gp_phone}).\n"
    "Contact: {phone}; {address}.",
    "{ward} - admission {admitted_dmy}. {name_upper}, °{dob_dotted}, rijksregister {nn_raw}, "
    "hospital id {mrn}. Reason: {reason}. Family can be reached on {phone}. "
    "GP {gp_name} informed.",
)

_DISCHARGE_LETTERS = {
    "nl": "Ontslagbrief {discharged_dmy}\n\n"
    "Geachte collega Dr. {gp_last},\n\n"
    "Uw patiënt(e) {full_name} (geboren op {dob_long}, rijksregisternummer {nn_dotted}, "
    "patiëntnummer {mrn}) werd van {admitted_dmy} tot {discharged_dmy} opgenomen op de "
    "afdeling {ward} voor {reason}.\n"
    "Ontslag naar: {outcome}.\n"
    "Voor vragen kan u de patiënt bereiken op {phone} of via {email}.\n\n"
    "Met collegiale groeten,\n{author}",
    "fr": "Lettre de sortie {discharged_dmy}\n\n"
    "Cher confrère Dr. {gp_last},\n\n"
    "Votre patient(e) {full_name} (né(e) le {dob_long}, numéro national {nn_raw}, "
    "dossier {mrn}) a été hospitalisé(e) du {admitted_dmy} au {discharged_dmy} dans le "
    "service {ward} pour {reason}.\n"
    "Sortie : {outcome}.\n"
    "Adresse : {address}. Téléphone : {phone}.\n\n"
    "Bien confraternellement,\n{author}",
}

_DEATH_NOTE = (
    "Death note. {full_name}, {mrn}, NRN {nn_raw}, born {dob_iso}, died on "
    "{discharged_dmy} at {discharged_time} on {ward}. Cause: {reason}. "
    "GP {gp_name} ({gp_phone}) and next of kin ({phone}) informed.\n{author}"
)

_MDT_NOTE = (
    "Neuro-oncology MDT {mdt_dmy}\n"
    "{name_upper} ({age}y), {mrn}, NRN {nn_dotted}, DOB {dob_dmy}.\n"
    "MRI brain {mri_dmy}: ring-enhancing lesion, {side} {lobe} lobe, with mass effect.\n"
    "Resection {surgery_dmy}; histology: glioblastoma, IDH-wildtype, MGMT promoter {mgmt}.\n"
    "Tumour tissue sent for sequencing and single-cell profiling.\n"
    "Plan: chemoradiation with temozolomide (Stupp protocol). "
    "GP {gp_name} informed by phone ({gp_phone})."
)

_PHONE_NOTE = (
    "Phone call {call_dmy}: {relative} of {first_name} {last_name} called from {phone} "
    "asking about the discharge date. Told to contact the ward."
)


@dataclass(frozen=True)
class Note:
    note_id: str
    patient_id: str
    admission_id: str
    written_at: datetime
    note_type: str
    author: str
    text: str
    identifiers: tuple[tuple[IdentifierKind, str], ...]
    """Every identifier in `text`, as written."""


def long_date(day: date, language: str) -> str:
    """`5 March 1956`, `5 maart 1956`, `5 mars 1956`."""
    return f"{day.day} {_MONTHS[language].split()[day.month - 1]} {day.year}"


def render(template: str, fields: Fields) -> tuple[str, tuple[tuple[IdentifierKind, str], ...]]:
    """Fill `template`; return the text and the identifiers it now contains."""
    found: list[tuple[IdentifierKind, str]] = []

    def fill(match: re.Match[str]) -> str:
        kind, value = fields[match.group(1)]
        if kind is not None:
            found.append((kind, value))
        return value

    text = _PLACEHOLDER.sub(fill, template)
    return text, tuple(dict.fromkeys(found))


def _visit(prefix: str, moment: datetime) -> Fields:
    return {
        f"{prefix}_iso": ("visit_date", f"{moment:%Y-%m-%d}"),
        f"{prefix}_dmy": ("visit_date", f"{moment:%d/%m/%Y}"),
        f"{prefix}_time": (None, f"{moment:%H:%M}"),
    }


def _author(author: Clinician) -> Fields:
    return {"author": ("clinician_name", author.name)}


def _fields(patient: Patient, admission: Admission, author: Clinician) -> Fields:
    dob = patient.birth_date
    fields: Fields = {
        "full_name": ("name", patient.full_name),
        "name_upper": ("name", f"{patient.last_name.upper()} {patient.first_name}"),
        "first_name": ("first_name", patient.first_name),
        "last_name": ("last_name", patient.last_name),
        "mrn": ("patient_id", patient.patient_id),
        "nn_raw": ("national_number", patient.national_number),
        "nn_dotted": ("national_number", formatted(patient.national_number)),
        "dob_dmy": ("birth_date", f"{dob:%d/%m/%Y}"),
        "dob_iso": ("birth_date", f"{dob:%Y-%m-%d}"),
        "dob_dotted": ("birth_date", f"{dob:%d.%m.%Y}"),
        "dob_long": ("birth_date", long_date(dob, patient.language)),
        "phone": ("phone", patient.phone),
        "email": ("email", patient.email),
        "address": ("address", patient.address),
        "gp_name": ("clinician_name", patient.gp.name),
        "gp_last": ("clinician_name", patient.gp.last_name),
        "gp_phone": ("phone", patient.gp.phone),
        "ward": (None, admission.ward),
        "reason": (None, admission.reason.description.lower()),
        "outcome": (None, admission.outcome),
        "age": (None, str(age_on(dob, admission.admitted.date()))),
    }
    fields.update(_author(author))
    fields.update(_visit("admitted", admission.admitted))
    fields.update(_visit("discharged", admission.discharged))
    return fields


class _NoteMaker:
    def __init__(self, rng: Random) -> None:
        self.number = rng.randint(1_000_000, 9_000_000)
        self.notes: list[Note] = []

    def add(
        self,
        admission: Admission,
        written_at: datetime,
        note_type: str,
        template: str,
        fields: Fields,
    ) -> None:
        """Add a note written by the clinician in `fields["author"]`."""
        text, identifiers = render(template, fields)
        self.number += 1
        self.notes.append(
            Note(
                note_id=f"NT{self.number:07d}",
                patient_id=admission.patient_id,
                admission_id=admission.admission_id,
                written_at=written_at,
                note_type=note_type,
                author=fields["author"][1],
                text=text,
                identifiers=identifiers,
            )
        )


def make_notes(seed: int, people: People, history: ClinicalHistory) -> tuple[Note, ...]:
    """An admission note and a discharge letter (or death note) per admission, plus
    phone calls and, for glioblastoma surgery, the neuro-oncology MDT note."""
    rng = seeds.rng(seed, "emr/notes")
    maker = _NoteMaker(rng)
    for admission in history.admissions:
        patient = people.patient(admission.patient_id)
        author = rng.choice(people.staff)
        fields = _fields(patient, admission, author)
        start = admission.admitted + timedelta(minutes=rng.randint(30, 180))
        maker.add(admission, start, "admission", rng.choice(_ADMISSION_NOTES), fields)
        if rng.random() < 0.25:
            call = admission.admitted + (admission.discharged - admission.admitted) / 2
            fields |= _visit("call", call)
            fields["relative"] = (None, rng.choice(("daughter", "son", "partner", "neighbour")))
            maker.add(admission, call, "phone call", _PHONE_NOTE, fields)
        course = history.tumour.get(patient.patient_id)
        if course is not None and course.surgery_admission_id == admission.admission_id:
            mdt = datetime.combine(course.surgery_on, datetime.min.time()) + timedelta(
                days=rng.randint(5, 10), hours=13
            )
            fields |= _visit("mdt", mdt)
            fields |= _visit("mri", datetime.combine(course.mri_on, datetime.min.time()))
            fields |= _visit("surgery", datetime.combine(course.surgery_on, datetime.min.time()))
            fields["side"] = (None, rng.choice(("left", "right")))
            fields["lobe"] = (None, rng.choice(("frontal", "temporal", "parietal")))
            fields["mgmt"] = (None, rng.choice(("methylated", "unmethylated")))
            maker.add(admission, mdt, "mdt", _MDT_NOTE, fields | _author(rng.choice(people.staff)))
        if admission.outcome == DEATH:
            maker.add(admission, admission.discharged, "death", _DEATH_NOTE, fields)
        else:
            letter = _DISCHARGE_LETTERS[patient.language]
            maker.add(admission, admission.discharged, "discharge letter", letter, fields)
    return tuple(maker.notes)
