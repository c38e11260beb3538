"""Synthetic Belgian patients, general practitioners and hospital staff.

People are a pure function of (seed, count): Faker is seeded per instance and every
other choice comes from a `random.Random` of the seed, never from global state.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from random import Random
from typing import Literal

from faker import Faker

from . import seeds
from .national_number import FEMALE_SERIALS, MALE_SERIALS, national_number
from .timeline import EXPORT_DATE

Sex = Literal["M", "F"]
Language = Literal["nl", "fr"]

_LOCALES: dict[Language, str] = {"nl": "nl_BE", "fr": "fr_BE"}
_DUTCH_SHARE = 0.6
_MRN_RANGE = range(10_000, 10_000_000)


@dataclass(frozen=True)
class Clinician:
    """A doctor: the patient's general practitioner or a hospital specialist."""

    first_name: str
    last_name: str
    phone: str

    @property
    def name(self) -> str:
        return f"Dr. {self.first_name} {self.last_name}"

    @property
    def dicom_name(self) -> str:
        return f"{self.last_name}^{self.first_name}"


@dataclass(frozen=True)
class Patient:
    """A hospital patient with every direct identifier a Belgian hospital record holds."""

    patient_id: str
    first_name: str
    last_name: str
    sex: Sex
    birth_date: date
    national_number: str
    street: str
    postcode: str
    city: str
    phone: str
    email: str
    language: Language
    gp: Clinician

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def dicom_name(self) -> str:
        return f"{self.last_name}^{self.first_name}"

    @property
    def address(self) -> str:
        return f"{self.street}, {self.postcode} {self.city}"


@dataclass(frozen=True)
class People:
    """Everyone in the demo hospital, patients sorted by hospital patient id."""

    patients: tuple[Patient, ...]
    general_practitioners: tuple[Clinician, ...]
    staff: tuple[Clinician, ...]

    def patient(self, patient_id: str) -> Patient:
        for patient in self.patients:
            if patient.patient_id == patient_id:
                return patient
        raise KeyError(patient_id)


def belgian_phone(rng: Random) -> str:
    """A Belgian phone number in one of the ways people write them."""
    digits = [str(rng.randint(0, 9)) for _ in range(6)]
    pairs = " ".join("".join(digits[i : i + 2]) for i in range(0, 6, 2))
    mobile = f"4{rng.choice('5679')}{rng.randint(0, 9)}"
    style = rng.randrange(5)
    if style == 0:
        return f"0{mobile} {pairs}"
    if style == 1:
        return f"+32 {mobile} {pairs}"
    if style == 2:
        return f"0{mobile}/{pairs.replace(' ', '.')}"
    zone = rng.choice(["2", "3", "4", "9", "10", "50", "56"])
    if len(zone) == 1:  # Brussels, Antwerp, Liège, Ghent: 7-digit subscriber numbers
        digits.append(str(rng.randint(0, 9)))
        groups = ["".join(digits[:3]), "".join(digits[3:5]), "".join(digits[5:])]
    else:
        groups = ["".join(digits[:2]), "".join(digits[2:4]), "".join(digits[4:])]
    if style == 3:
        return f"0{zone} {' '.join(groups)}"
    return f"0{zone}/{'.'.join(groups)}"


def ascii_fold(text: str) -> str:
    """`text` without accents, as systems limited to ASCII write names (Océane -> Oceane)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _ascii(text: str) -> str:
    return "".join(ch for ch in ascii_fold(text).lower() if ch.isalnum())


def _faker(seed: int) -> Faker:
    fake = Faker(list(_LOCALES.values()))
    fake.seed_instance(seed)
    return fake


def _clinician(fake: Faker, rng: Random) -> Clinician:
    locale = _LOCALES["nl" if rng.random() < _DUTCH_SHARE else "fr"]
    male = rng.random() < 0.5
    first = fake[locale].first_name_male() if male else fake[locale].first_name_female()
    return Clinician(first_name=first, last_name=fake[locale].last_name(), phone=belgian_phone(rng))


def _birth_date(rng: Random) -> date:
    # Mostly older adults, as in a hospital, with some young adults so that births
    # from 2000 on (the "2" prefix rule of the national number) occur.
    age = rng.uniform(18, 40) if rng.random() < 0.12 else rng.triangular(30, 96, 72)
    return EXPORT_DATE - timedelta(days=int(age * 365.25) + rng.randint(0, 364))


def make_people(seed: int, count: int) -> People:
    """`count` patients (ids like MRN0001234), their GPs and the hospital's doctors."""
    rng = seeds.rng(seed, "people")
    fake = _faker(seed)
    gps = tuple(_clinician(fake, rng) for _ in range(max(4, count // 12)))
    staff = tuple(_clinician(fake, rng) for _ in range(max(6, count // 20)))
    mrns = sorted(rng.sample(_MRN_RANGE, count))
    used_numbers: set[str] = set()
    patients = []
    for mrn in mrns:
        language: Language = "nl" if rng.random() < _DUTCH_SHARE else "fr"
        locale = fake[_LOCALES[language]]
        sex: Sex = "M" if rng.random() < 0.5 else "F"
        first = locale.first_name_male() if sex == "M" else locale.first_name_female()
        last = locale.last_name()
        birth = _birth_date(rng)
        serials = MALE_SERIALS if sex == "M" else FEMALE_SERIALS
        number = national_number(birth, rng.choice(serials))
        while number in used_numbers:
            number = national_number(birth, rng.choice(serials))
        used_numbers.add(number)
        nl = fake[_LOCALES["nl"]]  # fr_BE has no Belgian address provider
        domain = nl.free_email_domain()
        patients.append(
            Patient(
                patient_id=f"MRN{mrn:07d}",
                first_name=first,
                last_name=last,
                sex=sex,
                birth_date=birth,
                national_number=number,
                street=nl.street_address(),
                postcode=nl.postcode(),
                city=nl.city(),
                phone=belgian_phone(rng),
                email=f"{_ascii(first)}.{_ascii(last)}{rng.randint(1, 99)}@{domain}",
                language=language,
                gp=rng.choice(gps),
            )
        )
    return People(patients=tuple(patients), general_practitioners=gps, staff=staff)
