"""Dates in clinical notes: finding, parsing and rewriting them in Dutch, French and English.

Invariant: a full calendar date is recognised in any of the supported spellings and
can be written back in the same spelling, language and style after shifting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from .text_fold import LANGUAGES, WORD, fold, stop_words, words_of

MONTHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "full"): words_of(
        "January February March April May June July August September October November December"
    ),
    ("en", "short"): words_of("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"),
    ("nl", "full"): words_of(
        "januari februari maart april mei juni juli augustus september oktober november december"
    ),
    ("nl", "short"): words_of("jan feb mrt apr mei jun jul aug sep okt nov dec"),
    ("fr", "full"): words_of(
        "janvier février mars avril mai juin juillet août septembre octobre novembre décembre"
    ),
    ("fr", "short"): words_of("janv févr mars avr mai juin juil août sept oct nov déc"),
}
WEEKDAYS: dict[str, tuple[str, ...]] = {
    "en": words_of("Monday Tuesday Wednesday Thursday Friday Saturday Sunday"),
    "nl": words_of("maandag dinsdag woensdag donderdag vrijdag zaterdag zondag"),
    "fr": words_of("lundi mardi mercredi jeudi vendredi samedi dimanche"),
}


def _alternation(names: Iterable[str]) -> str:
    forms = {form for name in names for form in (name.lower(), fold(name))}
    return "(?:" + "|".join(sorted(map(re.escape, forms), key=lambda f: (-len(f), f))) + ")"


_EXTRA_MONTHS = {"sept": 9, "fev": 2, "fév": 2}
"""Abbreviations people write besides those of `MONTHS`."""


def _month_index() -> dict[str, list[tuple[str, str, int]]]:
    """Folded month word -> every (language, style, month number) it can be."""
    index: dict[str, list[tuple[str, str, int]]] = {}
    for (lang, style), names in MONTHS.items():
        for number, name in enumerate(names, start=1):
            index.setdefault(fold(name), []).append((lang, style, number))
    for word, number in _EXTRA_MONTHS.items():
        index.setdefault(fold(word), []).extend((lang, "short", number) for lang in LANGUAGES)
    return index


_MONTH = _alternation([*(n for names in MONTHS.values() for n in names), *_EXTRA_MONTHS])
_WEEKDAY = _alternation(n for names in WEEKDAYS.values() for n in names)
_MONTH_INDEX = _month_index()

_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_ORD = r"(?:st|nd|rd|th|er|e|ste|de)?"
_WD = rf"(?:(?P<wd>{_WEEKDAY}),?\s+)?"
_DMY_LONG = rf"{_WD}(?P<d>{_DAY})(?P<ord>{_ORD})\.?\s+(?P<mon>{_MONTH})\.?,?\s+(?P<y>\d{{4}})"
_MDY_LONG = rf"{_WD}(?P<mon>{_MONTH})\.?\s+(?P<d>{_DAY})(?P<ord>{_ORD}),?\s+(?P<y>\d{{4}})"
_DMY = r"(?P<d>\d{1,2})(?P<s>[/.-])(?P<m>\d{1,2})(?P=s)(?P<y>\d{4})"
_YMD = r"(?P<y>\d{4})(?P<s>[/.-])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})"
_FULL_DATES = tuple(re.compile(p, re.IGNORECASE) for p in (_YMD, _DMY, _DMY_LONG, _MDY_LONG))
_BEFORE = r"(?<![\w./-])"
DATE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("ymd", _BEFORE + _YMD + r"(?![./-]?\d)"),
    ("dmy", _BEFORE + _DMY + r"(?!\w|[./-]\d)"),
    ("dmy-long", r"(?<!\w)" + _DMY_LONG + r"(?!\d)"),
    ("mdy-long", r"(?<!\w)" + _MDY_LONG + r"(?!\d)"),
    ("month-year", rf"(?<!\w){_MONTH}\.?\s+\d{{4}}(?!\d)"),
    ("day-month", rf"(?<!\w){_DAY}{_ORD}\.?\s+{_MONTH}(?!\w)"),
    ("dmy-short", _BEFORE + rf"{_DAY}([/.-])(?:1[0-2]|0?[1-9])\1\d{{2}}(?!\w|[./-]?\d)"),
    ("month-num-year", _BEFORE + r"(?:1[0-2]|0[1-9])[/.-](?:19|20)\d{2}(?!\w|[./-]?\d)"),
)
"""Date spellings (day first, as in Belgium); only the first four can be shifted."""

BIRTH_CUE = re.compile(
    r"(?:\bborn|\bbirth|\bdob|\bd\.o\.b\.?|\bgeboren|\bgeb\.?|geboortedatum|\bnee?"
    r"|\bne\(e\)|naissance|°)\s*(?:on|op|le|the|:|,)?\s*$"
)


def guess_language(text: str) -> str:
    """The note's language, guessed from its stop words (for month names shared by two)."""
    words = set(WORD.findall(fold(text)))
    scores = {lang: len(words & stop_words(lang)) for lang in LANGUAGES}
    return max(LANGUAGES, key=lambda lang: scores[lang])


def _styled(new: str, old: str) -> str:
    """`new` in the case of `old`, and without accents if `old` had none."""
    if len(old) > 1 and old.isupper():
        new = new.upper()
    elif old[:1].isupper():
        new = new[:1].upper() + new[1:]
    else:
        new = new.lower()
    if old.isascii():
        new = unicodedata.normalize("NFKD", new).encode("ascii", "ignore").decode("ascii")
    return new


@dataclass(frozen=True)
class ParsedDate:
    value: date
    match: re.Match[str]
    language: str

    def render(self, new: date) -> str:
        """The date `new`, written as this one was (separators, padding, month words)."""
        m = self.match
        groups = m.groupdict()
        lang = self.language
        if groups.get("mon"):
            entries = _MONTH_INDEX[fold(groups["mon"])]
            lang, style, _ = next((e for e in entries if e[0] == lang), entries[0])
        parts: list[tuple[int, int, str]] = []
        for name, text in groups.items():
            if not text:
                continue
            if name == "d":
                # dd/mm/yyyy keeps its width; "05 June" its zero, "30 June" -> "9 July"
                width = len(text) if groups.get("m") or text.startswith("0") else 1
                value = f"{new.day:0{width}d}"
            elif name == "m":
                value = f"{new.month:0{len(text)}d}"
            elif name == "y":
                value = f"{new.year:04d}"
            elif name == "mon":
                value = _styled(MONTHS[(lang, style)][new.month - 1], text)
            elif name == "wd":
                value = _styled(WEEKDAYS[lang][new.weekday()], text)
            elif name == "ord":
                value = ""
            else:
                continue
            parts.append((*m.span(name), value))
        out, last = [], 0
        for start, end, value in sorted(parts):
            out += [m.string[last:start], value]
            last = end
        return "".join(out) + m.string[last:]


def parse_date(text: str, language: str = "en") -> ParsedDate | None:
    """A full calendar date spelled as one of the shiftable `DATE_PATTERNS`, else None."""
    for pattern in _FULL_DATES:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        month = m.groupdict().get("m")
        month_number = int(month) if month else _MONTH_INDEX[fold(m["mon"])][0][2]
        try:
            return ParsedDate(date(int(m["y"]), month_number, int(m["d"])), m, language)
        except ValueError:
            return None
    return None
