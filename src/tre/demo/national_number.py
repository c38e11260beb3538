"""Belgian national register numbers (rijksregisternummer / numéro de registre national).

A number is 11 digits YYMMDDSSSCC; CC = 97 - (N mod 97), where N is the first nine
digits, prefixed with a `2` for births from the year 2000 on.
"""

from __future__ import annotations

from datetime import date

MALE_SERIALS = range(1, 998, 2)
"""Day-of-birth serial numbers for men are odd (001-997)."""

FEMALE_SERIALS = range(2, 999, 2)
"""Day-of-birth serial numbers for women are even (002-998)."""


def check_digits(birth_date: date, serial: int) -> int:
    """The two check digits for a person born on `birth_date` with day serial `serial`."""
    if not 1 <= serial <= 998:
        raise ValueError(f"serial must be between 1 and 998, got {serial}")
    base = f"{birth_date:%y%m%d}{serial:03d}"
    if birth_date.year >= 2000:
        base = "2" + base
    return 97 - int(base) % 97


def national_number(birth_date: date, serial: int) -> str:
    """The 11-digit national number, without separators."""
    return f"{birth_date:%y%m%d}{serial:03d}{check_digits(birth_date, serial):02d}"


def formatted(number: str) -> str:
    """The number as Belgians write it: YY.MM.DD-SSS.CC."""
    return f"{number[0:2]}.{number[2:4]}.{number[4:6]}-{number[6:9]}.{number[9:11]}"


def is_valid(number: str) -> bool:
    """True when `number` is 11 digits whose check digits fit a 19xx or 20xx birth."""
    if len(number) != 11 or not number.isdigit():
        return False
    body, check = number[:9], int(number[9:])
    return check in (97 - int(body) % 97, 97 - int("2" + body) % 97)
