"""The fixed calendar of the demo hospital: every generated event falls in it.

Dates never depend on the day the generator runs, so the same seed gives the same
silos on any day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from random import Random

HISTORY_START = date(2022, 1, 1)
"""First day of the exported hospital history."""

EXPORT_DATE = date(2025, 6, 30)
"""The day the hospital exported its silos; every event happens before it."""

HOSPITAL = "AZ Demostad"
"""The fictional hospital; also the DICOM InstitutionName."""

HOSPITAL_LAB = "AZ Demostad Centre for Medical Genetics"
"""The hospital's sequencing lab, which names samples with its own ids."""


def random_day(rng: Random, first: date, last: date) -> date:
    """A day between `first` and `last`, both included."""
    if last < first:
        raise ValueError(f"empty date range {first} .. {last}")
    return first + timedelta(days=rng.randint(0, (last - first).days))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A naive local timestamp on `day` (hospital exports carry local time, no zone)."""
    return datetime.combine(day, time(hour, minute))


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day`."""
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years
