"""Dates without calendar dates: every date of one patient moves by the same non-zero number
of days (fixed per patient and project), so intervals within a patient are kept exactly;
or dates are generalised to their month or year.

The offset is HMAC-SHA256 under the project's date-shift sub-key, of the normalised
patient id, reduced to one of the 2 * max_days values in [-max_days, -1] and
[1, max_days]; reducing a 256-bit number modulo 2 * max_days leaves a bias below 2^-245,
so the offset is uniform for every practical purpose. Another project, or a re-run with
another master key, gives independent offsets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TypeVar, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .keys import KeyPurpose, ProjectKey
from .patient_ids import encode_patient_id

DEFAULT_MAX_SHIFT_DAYS = 365
"""Offsets are drawn from [-365, -1] and [1, 365] unless a project says otherwise."""

DEFAULT_AGE_BAND_WIDTH = 5
DEFAULT_AGE_TOP = 90
"""Ages from 90 up are reported as "90+" (as in HIPAA's Safe Harbor method)."""

D = TypeVar("D", bound=date)


class DateHandling(StrEnum):
    """How a dataset's dates leave ingest."""

    shift = "shift"
    """Move by the patient's offset: exact intervals, hidden calendar dates."""
    month = "month"
    """Keep year and month only (as the first day of the month)."""
    year = "year"
    """Keep the year only (as 1 January)."""


class DateShifter:
    """The per-patient date offsets of one project."""

    __slots__ = ("_mac", "key_id", "max_days", "project_id")

    def __init__(self, project_key: ProjectKey, *, max_days: int = DEFAULT_MAX_SHIFT_DAYS) -> None:
        if isinstance(max_days, bool) or not isinstance(max_days, int) or max_days < 1:
            raise ValueError(f"max_days must be a whole number of days >= 1, got {max_days!r}")
        self._mac = crypto_hmac.HMAC(project_key.subkey(KeyPurpose.date_shift), hashes.SHA256())
        self.max_days = max_days
        self.project_id = project_key.project_id
        self.key_id = project_key.key_id

    def __repr__(self) -> str:
        return (
            f"DateShifter(project_id={self.project_id!r}, key_id={self.key_id!r}, "
            f"max_days={self.max_days})"
        )

    def offset_days(self, patient_id: str) -> int:
        """The patient's offset: a whole number of days, never 0, |offset| <= max_days."""
        mac = self._mac.copy()
        mac.update(encode_patient_id(patient_id))
        k = int.from_bytes(mac.finalize(), "big") % (2 * self.max_days)
        return k - self.max_days if k < self.max_days else k - self.max_days + 1

    def shift(self, value: D, patient_id: str) -> D:
        """`value` moved by the patient's offset.

        Dates and naive datetimes move on their own calendar (time of day kept). Aware
        datetimes move on the UTC time line and come back in UTC, so the elapsed time
        between any two of a patient's instants is kept exactly, across daylight-saving
        changes too, and the original time zone (a hint of place) is not carried over.
        """
        delta = timedelta(days=self.offset_days(patient_id))
        try:
            if isinstance(value, datetime) and value.tzinfo is not None:
                return cast(D, value.astimezone(UTC) + delta)
            return value + delta
        except OverflowError:
            # The date itself stays out of the message: it may be a date of birth.
            raise ValueError(
                "shifting this date by the patient's offset leaves the supported range "
                "(years 1 to 9999)"
            ) from None


def generalise_date(value: date, to: DateHandling | str) -> date:
    """The first day of `value`'s month or year, as a `date` (a time of day is dropped).

    Aware datetimes are generalised in their own time zone, as the record states them.
    """
    to = DateHandling(to)
    if to is DateHandling.month:
        return date(value.year, value.month, 1)
    if to is DateHandling.year:
        return date(value.year, 1, 1)
    raise ValueError("generalise_date takes 'month' or 'year'; use DateShifter.shift to shift")


def transform_date(
    value: date,
    handling: DateHandling | str,
    *,
    patient_id: str | None = None,
    shifter: DateShifter | None = None,
) -> date:
    """A date (or datetime) as the dataset's `handling` says it leaves ingest.

    `shift` needs the `shifter` of the project and the patient's hospital id, and keeps
    the type of `value`; `month` and `year` return a `date`.
    """
    handling = DateHandling(handling)
    if handling is DateHandling.shift:
        if shifter is None or patient_id is None:
            raise ValueError(
                "date handling 'shift' needs the project's DateShifter and the patient id"
            )
        return shifter.shift(value, patient_id)
    return generalise_date(value, handling)


def age_at(birth: date, on: date) -> int:
    """Age in completed years on `on` (someone born on 29 February ages on 1 March in
    other years). Datetimes count by their date."""
    birth, on = _as_date(birth), _as_date(on)
    if on < birth:
        raise ValueError("the reference date is before the date of birth")
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_band(
    birth: date,
    on: date,
    *,
    width: int = DEFAULT_AGE_BAND_WIDTH,
    top: int = DEFAULT_AGE_TOP,
) -> str:
    """The age on `on` as a band such as "40-44", with everyone from `top` up as "90+"."""
    if width < 1 or top < 1:
        raise ValueError(f"age bands need width >= 1 and top >= 1, got width={width}, top={top}")
    age = age_at(birth, on)
    if age >= top:
        return f"{top}+"
    low = age // width * width
    high = min(low + width - 1, top - 1)
    return str(low) if low == high else f"{low}-{high}"


def _as_date(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value
