"""Date shifts keep a patient's intervals exactly, never shift by 0, differ per project;
generalisation and ages do what the names say."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tre.pseudonym.dates import (
    DateHandling,
    DateShifter,
    age_at,
    age_band,
    generalise_date,
    transform_date,
)
from tre.pseudonym.keys import KeyPurpose, MasterKey, derive_project_key

MASTER = MasterKey(bytes(range(32)))
PROJECT = derive_project_key(MASTER, "gbm-2026")
SHIFTER = DateShifter(PROJECT)
BRUSSELS = ZoneInfo("Europe/Brussels")

patient_ids = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
# Keep clear of date.min/max, where a shift would leave the calendar.
dates = st.dates(min_value=date(1800, 1, 1), max_value=date(2200, 12, 31))
naive_datetimes = st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 12, 31))
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 12, 31),
    timezones=st.sampled_from([UTC, BRUSSELS, ZoneInfo("America/New_York")]),
)


@settings(database=None, deadline=None)
@given(patient_ids, st.integers(min_value=1, max_value=800))
def test_offset_is_a_non_zero_whole_number_of_days_within_the_bound(
    patient_id: str, max_days: int
) -> None:
    offset = DateShifter(PROJECT, max_days=max_days).offset_days(patient_id)
    assert offset != 0
    assert -max_days <= offset <= max_days


def test_offset_follows_the_documented_definition() -> None:
    digest = hmac.new(
        PROJECT.subkey(KeyPurpose.date_shift), b"BE-UZL-0000042", hashlib.sha256
    ).digest()
    k = int.from_bytes(digest, "big") % 730
    expected = k - 365 if k < 365 else k - 364
    assert SHIFTER.offset_days(" BE-UZL-0000042 ") == expected == 58


def test_offsets_cover_both_signs_and_every_value_of_a_small_range() -> None:
    shifter = DateShifter(PROJECT, max_days=3)
    counts = Counter(shifter.offset_days(f"id{i}") for i in range(3000))
    assert set(counts) == {-3, -2, -1, 1, 2, 3}
    assert min(counts.values()) > 400, counts  # ~500 each if uniform
    assert {DateShifter(PROJECT, max_days=1).offset_days(f"id{i}") for i in range(50)} == {
        -1,
        1,
    }


@settings(database=None, deadline=None)
@given(patient_ids, dates, dates)
def test_intervals_between_dates_are_kept_exactly(pid: str, a: date, b: date) -> None:
    assert SHIFTER.shift(b, pid) - SHIFTER.shift(a, pid) == b - a
    assert SHIFTER.shift(a, pid) != a
    assert type(SHIFTER.shift(a, pid)) is date


@settings(database=None, deadline=None)
@given(patient_ids, naive_datetimes, naive_datetimes)
def test_intervals_between_naive_datetimes_are_kept_exactly(
    pid: str, a: datetime, b: datetime
) -> None:
    sa, sb = SHIFTER.shift(a, pid), SHIFTER.shift(b, pid)
    assert sb - sa == b - a
    assert sa.time() == a.time() and sa.tzinfo is None
    assert type(sa) is datetime


@settings(database=None, deadline=None)
@given(patient_ids, aware_datetimes, aware_datetimes)
def test_elapsed_time_between_aware_datetimes_is_kept_exactly(
    pid: str, a: datetime, b: datetime
) -> None:
    sa, sb = SHIFTER.shift(a, pid), SHIFTER.shift(b, pid)
    assert sa.tzinfo is UTC and sb.tzinfo is UTC
    assert sb - sa == b.astimezone(UTC) - a.astimezone(UTC)
    assert sa - a == timedelta(days=SHIFTER.offset_days(pid))


def test_aware_shift_across_daylight_saving_keeps_elapsed_hours() -> None:
    # 23 hours of elapsed time across the spring change in Brussels.
    before = datetime(2024, 3, 30, 12, 0, tzinfo=BRUSSELS)
    after = datetime(2024, 3, 31, 12, 0, tzinfo=BRUSSELS)
    elapsed = after.astimezone(UTC) - before.astimezone(UTC)
    assert elapsed == timedelta(hours=23)
    assert SHIFTER.shift(after, "p") - SHIFTER.shift(before, "p") == elapsed


def test_fixed_offset_zones_come_back_in_utc() -> None:
    value = datetime(2024, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))
    shifted = SHIFTER.shift(value, "p")
    assert shifted.tzinfo is UTC
    assert shifted == value + timedelta(days=SHIFTER.offset_days("p"))


def test_same_patient_same_offset_across_instances_and_white_space() -> None:
    again = DateShifter(derive_project_key(MasterKey(bytes(range(32))), "gbm-2026"))
    for i in range(50):
        assert again.offset_days(f" id{i}\t") == SHIFTER.offset_days(f"id{i}")


@pytest.mark.security
def test_other_projects_shift_differently() -> None:
    other = DateShifter(derive_project_key(MASTER, "gbm-2027"))
    ids = [f"id{i}" for i in range(200)]
    same = sum(SHIFTER.offset_days(i) == other.offset_days(i) for i in ids)
    assert same < 10  # 200 / 730 expected by chance


def test_shifting_out_of_the_calendar_is_an_error_that_does_not_quote_the_date() -> None:
    offset = SHIFTER.offset_days("p")
    edge = date.max if offset > 0 else date.min
    with pytest.raises(ValueError) as exc:
        SHIFTER.shift(edge, "p")
    assert str(exc.value) == (
        "shifting this date by the patient's offset leaves the supported range (years 1 to 9999)"
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_days_must_be_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="max_days must be a whole number of days >= 1"):
        DateShifter(PROJECT, max_days=bad)  # type: ignore[arg-type]


def test_repr_shows_no_key() -> None:
    assert repr(SHIFTER) == (
        "DateShifter(project_id='gbm-2026', key_id='4d82fc21e0bea442', max_days=365)"
    )


# Generalisation and the single entry point


@pytest.mark.parametrize(
    ("value", "handling", "expected"),
    [
        (date(2024, 2, 29), DateHandling.month, date(2024, 2, 1)),
        (date(2024, 2, 29), DateHandling.year, date(2024, 1, 1)),
        (datetime(2024, 12, 31, 23, 59), "month", date(2024, 12, 1)),
        (datetime(2024, 12, 31, 23, 59, tzinfo=BRUSSELS), "year", date(2024, 1, 1)),
    ],
)
def test_generalise_to_month_or_year(value: date, handling: str, expected: date) -> None:
    assert generalise_date(value, handling) == expected
    assert type(generalise_date(value, handling)) is date
    assert transform_date(value, handling) == expected


def test_generalise_does_not_shift() -> None:
    with pytest.raises(ValueError, match="takes 'month' or 'year'"):
        generalise_date(date(2024, 1, 1), DateHandling.shift)


def test_transform_date_shifts_with_the_shifter() -> None:
    value = datetime(2024, 3, 1, 10, 0)
    assert transform_date(value, "shift", patient_id="p", shifter=SHIFTER) == SHIFTER.shift(
        value, "p"
    )
    with pytest.raises(ValueError, match="needs the project's DateShifter and the patient id"):
        transform_date(value, DateHandling.shift, patient_id="p")
    with pytest.raises(ValueError, match="needs the project's DateShifter and the patient id"):
        transform_date(value, DateHandling.shift, shifter=SHIFTER)
    with pytest.raises(ValueError, match="is not a valid DateHandling"):
        transform_date(value, "week")


# Ages


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(1980, 6, 15), date(2024, 6, 14), 43),
        (date(1980, 6, 15), date(2024, 6, 15), 44),
        (date(2000, 2, 29), date(2023, 2, 28), 22),
        (date(2000, 2, 29), date(2023, 3, 1), 23),
        (date(2000, 2, 29), date(2024, 2, 29), 24),
        (date(2024, 1, 1), date(2024, 1, 1), 0),
        (datetime(1980, 6, 15, 23, 0), datetime(2024, 6, 15, 1, 0), 44),
    ],
)
def test_age_in_completed_years(birth: date, on: date, age: int) -> None:
    assert age_at(birth, on) == age


def test_age_before_birth_is_an_error() -> None:
    with pytest.raises(ValueError, match="the reference date is before the date of birth"):
        age_at(date(2024, 1, 2), date(2024, 1, 1))


@pytest.mark.parametrize(
    ("birth", "kwargs", "band"),
    [
        (date(1980, 6, 15), {}, "40-44"),
        (date(1935, 1, 1), {}, "90+"),
        (date(1934, 1, 1), {}, "90+"),
        (date(1935, 1, 2), {}, "85-89"),
        (date(2024, 1, 1), {}, "0-4"),
        (date(1943, 1, 1), {"width": 10, "top": 85}, "80-84"),
        (date(1940, 1, 1), {"width": 10, "top": 85}, "85+"),
        (date(1980, 6, 15), {"width": 1}, "44"),
    ],
)
def test_age_bands(birth: date, kwargs: dict[str, int], band: str) -> None:
    assert age_band(birth, date(2025, 1, 1), **kwargs) == band


def test_age_band_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="age bands need width >= 1 and top >= 1"):
        age_band(date(1980, 1, 1), date(2025, 1, 1), width=0)
