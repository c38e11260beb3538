"""The clinical history of the demo hospital: diagnoses, admissions, drug administrations.

History is a pure function of (seed, people): about a fifth of the patients form a
glioblastoma cohort (SNOMED CT 393563007), every event falls between `HISTORY_START`
and `EXPORT_DATE`, nothing happens to a patient after their death, and some
admissions are 30-day readmissions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from random import Random

from . import seeds
from .codes import (
    ACUTE_CONDITIONS,
    ALWAYS_GIVEN,
    APIXABAN,
    CHRONIC_CONDITIONS,
    ENOXAPARIN,
    EPILEPSY,
    GLIOBLASTOMA,
    GLIOBLASTOMA_FOLLOW_UP_DEATH_RISK,
    GLIOBLASTOMA_FOLLOW_UP_DRUGS,
    GLIOBLASTOMA_FOLLOW_UP_WARD,
    HYPERTENSION,
    Condition,
    Drug,
)
from .people import Patient, People
from .timeline import EXPORT_DATE, HISTORY_START, age_on, at, random_day

GLIOBLASTOMA_SHARE = 0.2
"""Share of patients in the glioblastoma cohort."""

DEATH = "death"
OUTCOMES = ("home", "rehabilitation", "nursing home", "transferred")
_OUTCOME_WEIGHTS = (0.75, 0.1, 0.07, 0.08)
_DOSE_HOURS = {1: (8,), 2: (8, 20), 3: (8, 14, 22), 4: (6, 12, 18, 22)}
_MAX_TREATED_DAYS = 5
_EARLIEST_CHRONIC_DIAGNOSIS = date(2005, 1, 1)


@dataclass(frozen=True)
class Diagnosis:
    diagnosis_id: str
    patient_id: str
    condition: Condition
    diagnosed_on: date


@dataclass(frozen=True)
class Admission:
    admission_id: str
    patient_id: str
    admitted: datetime
    discharged: datetime
    ward: str
    reason: Condition
    outcome: str


@dataclass(frozen=True)
class Administration:
    administration_id: str
    patient_id: str
    admission_id: str
    given_at: datetime
    drug: Drug


@dataclass(frozen=True)
class TumourCourse:
    """The dates that tie a glioblastoma patient's imaging, tissue and samples together."""

    patient_id: str
    mri_on: date
    surgery_on: date
    surgery_admission_id: str


@dataclass(frozen=True)
class ClinicalHistory:
    glioblastoma: tuple[str, ...]
    """Hospital ids of the glioblastoma cohort, sorted."""
    conditions: dict[str, tuple[Condition, ...]]
    diagnoses: tuple[Diagnosis, ...]
    admissions: tuple[Admission, ...]
    administrations: tuple[Administration, ...]
    tumour: dict[str, TumourCourse]

    def admissions_of(self, patient_id: str) -> tuple[Admission, ...]:
        return tuple(a for a in self.admissions if a.patient_id == patient_id)

    def readmissions(self, within_days: int = 30) -> tuple[Admission, ...]:
        """Admissions that started within `within_days` of the previous discharge."""
        found = []
        previous: dict[str, Admission] = {}
        for admission in sorted(self.admissions, key=lambda a: (a.patient_id, a.admitted)):
            before = previous.get(admission.patient_id)
            if before and (admission.admitted - before.discharged).days < within_days:
                found.append(admission)
            previous[admission.patient_id] = admission
        return tuple(found)


@dataclass
class _Counters:
    """Sequential ids; each starts at a seed-dependent base, as hospital numbers do."""

    admission: int
    diagnosis: int
    administration: int
    diagnoses: list[Diagnosis] = field(default_factory=list)
    admissions: list[Admission] = field(default_factory=list)
    administrations: list[Administration] = field(default_factory=list)

    def add_diagnosis(self, patient: Patient, condition: Condition, on: date) -> None:
        self.diagnosis += 1
        self.diagnoses.append(
            Diagnosis(f"DX{self.diagnosis:07d}", patient.patient_id, condition, on)
        )

    def next_admission_id(self) -> str:
        self.admission += 1
        return f"ADM{self.admission:07d}"


def _stay(
    rng: Random,
    counters: _Counters,
    patient: Patient,
    day: date,
    *,
    reason: Condition,
    ward: str,
    death_risk: float,
    stay_days: tuple[int, int],
) -> Admission:
    admitted = at(day, rng.randint(0, 23), rng.choice((0, 15, 30, 45)))
    length = rng.randint(*stay_days)
    age = age_on(patient.birth_date, day)
    risk = death_risk * (1 + max(0, age - 70) / 20)
    if rng.random() < risk:
        outcome = DEATH
        discharged = at(day + timedelta(days=length), rng.randint(0, 23), rng.randint(0, 59))
    else:
        outcome = rng.choices(OUTCOMES, _OUTCOME_WEIGHTS)[0]
        discharged = at(day + timedelta(days=length), rng.randint(10, 17), rng.randint(0, 59))
    if discharged > at(EXPORT_DATE, 0):
        discharged = at(EXPORT_DATE, 0) - timedelta(hours=rng.randint(1, 12))
    discharged = max(discharged, admitted + timedelta(hours=4))
    admission = Admission(
        counters.next_admission_id(),
        patient.patient_id,
        admitted,
        discharged,
        ward,
        reason,
        outcome,
    )
    counters.admissions.append(admission)
    return admission


def _next_day(rng: Random, after: datetime, readmit_share: float, usual: tuple[int, int]) -> date:
    if rng.random() < readmit_share:
        return after.date() + timedelta(days=rng.randint(2, 29))
    return after.date() + timedelta(days=rng.randint(*usual))


def _glioblastoma_history(
    rng: Random, counters: _Counters, patient: Patient
) -> tuple[tuple[Condition, ...], TumourCourse]:
    conditions: list[Condition] = [GLIOBLASTOMA]
    first = random_day(rng, HISTORY_START + timedelta(days=30), EXPORT_DATE - timedelta(days=90))
    mri_on = first - timedelta(days=rng.randint(2, 14))
    surgery_on = first + timedelta(days=rng.randint(1, 3))
    if rng.random() < 0.4:  # seizures are a common first presentation
        conditions.append(EPILEPSY)
        counters.add_diagnosis(patient, EPILEPSY, first)
    if rng.random() < 0.3:
        conditions.append(HYPERTENSION)
        counters.add_diagnosis(
            patient,
            HYPERTENSION,
            random_day(rng, _EARLIEST_CHRONIC_DIAGNOSIS, HISTORY_START - timedelta(days=1)),
        )
    counters.add_diagnosis(patient, GLIOBLASTOMA, surgery_on)
    low, high = GLIOBLASTOMA.stay_days
    admission = _stay(
        rng, counters, patient, first, reason=GLIOBLASTOMA, ward=GLIOBLASTOMA.ward,
        death_risk=GLIOBLASTOMA.death_risk,
        stay_days=(max(low, (surgery_on - first).days + 2), high),
    )  # fmt: skip
    course = TumourCourse(patient.patient_id, mri_on, surgery_on, admission.admission_id)
    follow_ups = rng.choice((0, 1, 2, 2, 3, 4))
    previous = admission
    for number in range(follow_ups):
        if previous.outcome == DEATH:
            break
        day = _next_day(rng, previous.discharged, 0.3, (30, 120))
        if day > EXPORT_DATE - timedelta(days=3):
            break
        previous = _stay(
            rng, counters, patient, day, reason=GLIOBLASTOMA, ward=GLIOBLASTOMA_FOLLOW_UP_WARD,
            death_risk=GLIOBLASTOMA_FOLLOW_UP_DEATH_RISK * (1 + number), stay_days=(1, 7),
        )  # fmt: skip
    return tuple(conditions), course


def _other_history(rng: Random, counters: _Counters, patient: Patient) -> tuple[Condition, ...]:
    how_many = rng.choices((1, 2, 3), (0.5, 0.35, 0.15))[0]
    chronic = sorted(rng.sample(CHRONIC_CONDITIONS, how_many), key=lambda c: c.snomed_code)
    first = random_day(rng, HISTORY_START, EXPORT_DATE - timedelta(days=30))
    for condition in chronic:
        if rng.random() < 0.6:
            known_since = random_day(
                rng, _EARLIEST_CHRONIC_DIAGNOSIS, HISTORY_START - timedelta(days=1)
            )
        else:
            known_since = first
        counters.add_diagnosis(patient, condition, known_since)
    conditions: list[Condition] = list(chronic)
    day = first
    for _ in range(rng.choices((1, 2, 3, 4), (0.4, 0.3, 0.2, 0.1))[0]):
        if rng.random() < 0.3:
            reason = rng.choice(ACUTE_CONDITIONS)
            counters.add_diagnosis(patient, reason, day)
            if reason not in conditions:
                conditions.append(reason)
        else:
            reason = rng.choice(chronic)
        admission = _stay(
            rng, counters, patient, day, reason=reason, ward=reason.ward,
            death_risk=reason.death_risk, stay_days=reason.stay_days,
        )  # fmt: skip
        if admission.outcome == DEATH:
            break
        day = _next_day(rng, admission.discharged, 0.2, (31, 400))
        if day > EXPORT_DATE - timedelta(days=3):
            break
    return tuple(conditions)


def _drugs_for(rng: Random, admission: Admission, conditions: tuple[Condition, ...]) -> list[Drug]:
    if admission.reason == GLIOBLASTOMA and admission.ward == GLIOBLASTOMA_FOLLOW_UP_WARD:
        drugs = list(GLIOBLASTOMA_FOLLOW_UP_DRUGS)
    else:
        drugs = list(admission.reason.drugs)
    for condition in conditions:  # home medication goes on during the stay
        if condition is not admission.reason and not condition.acute and condition.drugs:
            drugs.append(condition.drugs[0])
    for drug in ALWAYS_GIVEN:
        if drug is ENOXAPARIN and APIXABAN in drugs:
            continue
        if rng.random() < 0.7:
            drugs.append(drug)
    unique: dict[str, Drug] = {}
    for drug in drugs:
        unique.setdefault(drug.atc_code, drug)
    return list(unique.values())


def _administer(
    rng: Random, counters: _Counters, admission: Admission, conditions: tuple[Condition, ...]
) -> None:
    for drug in _drugs_for(rng, admission, conditions):
        day = admission.admitted.date()
        for _ in range(_MAX_TREATED_DAYS):
            for hour in _DOSE_HOURS[drug.times_per_day]:
                given = at(day, hour, rng.randint(0, 20))
                if admission.admitted < given < admission.discharged:
                    counters.administration += 1
                    counters.administrations.append(
                        Administration(
                            f"MAR{counters.administration:08d}",
                            admission.patient_id,
                            admission.admission_id,
                            given,
                            drug,
                        )
                    )
            day += timedelta(days=1)


def glioblastoma_cohort(seed: int, people: People) -> tuple[str, ...]:
    """About a fifth of the patients, adults of the age glioblastoma strikes, sorted."""
    rng = seeds.rng(seed, "emr/cohort")
    wanted = max(1, round(len(people.patients) * GLIOBLASTOMA_SHARE))
    eligible = [p for p in people.patients if 35 <= age_on(p.birth_date, EXPORT_DATE) <= 90]
    if len(eligible) < wanted:
        eligible = list(people.patients)
    return tuple(sorted(p.patient_id for p in rng.sample(eligible, wanted)))


def make_history(seed: int, people: People) -> ClinicalHistory:
    """The whole clinical history of the demo hospital."""
    rng = seeds.rng(seed, "emr/history")
    cohort = glioblastoma_cohort(seed, people)
    counters = _Counters(
        admission=rng.randint(100_000, 900_000),
        diagnosis=rng.randint(100_000, 900_000),
        administration=rng.randint(1_000_000, 9_000_000),
    )
    conditions: dict[str, tuple[Condition, ...]] = {}
    tumour: dict[str, TumourCourse] = {}
    for patient in people.patients:
        if patient.patient_id in cohort:
            conditions[patient.patient_id], tumour[patient.patient_id] = _glioblastoma_history(
                rng, counters, patient
            )
        else:
            conditions[patient.patient_id] = _other_history(rng, counters, patient)
    for admission in counters.admissions:
        _administer(rng, counters, admission, conditions[admission.patient_id])
    return ClinicalHistory(
        glioblastoma=cohort,
        conditions=conditions,
        diagnoses=tuple(counters.diagnoses),
        admissions=tuple(counters.admissions),
        administrations=tuple(counters.administrations),
        tumour=tumour,
    )
