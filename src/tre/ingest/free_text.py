"""Redaction of clinical free text (Dutch, French, English) without any language model.

Invariant: every span that a recogniser or a deny-list flags is replaced — by a token
(`<NAME>`, `<ID>`, `<PHONE>`, `<EMAIL>`, `<ADDRESS>`, `<DATE>`) or, for a full calendar
date that is not a birth date, by the same date shifted with the patient's offset and
written the same way; overlapping flags are merged and the most sensitive kind wins;
only counts by kind leave this module, never the values.

Detection is presidio-analyzer with its `NoOpNlpEngine` (no spaCy model is loaded or
downloaded) and these recognisers:

* patterns: dates (`09/02/1939`, `2024-06-29`, `26.12.1968`, `6 oktober 1978`,
  `8 mai 1958`, `June 5, 2024`, month-year and day-month fragments), Belgian national
  register numbers (formatted, spaced or raw, raw ones checked by their mod-97 digits),
  hospital and record ids, long digit runs, e-mail addresses, street addresses, postcode
  and town after a comma, and names after a title (`Dr.`, `Mme`, `Dhr.` ...);
* phone numbers: presidio's `PhoneRecognizer` (python-phonenumbers) for Belgium and its
  neighbours, plus a pattern for Belgian spellings (`056/41.52.89`, `+32 459 46 74 72`);
* deny-lists built from structured identifiers (`DenyList`): names, addresses, streets,
  towns, phone and national numbers. Words are compared case- and accent-insensitively
  on whole words ("LÉONARD" = "Leonard"); a one-word entry that is also a common word
  (spaCy's Dutch, French and English stop words, or shorter than three letters, or
  listed in `RedactorConfig.common_words`) only matches when written with a capital.

Names nobody listed and no title introduces are not found: there is no NER model.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from .free_text_dates import BIRTH_CUE, DATE_PATTERNS, guess_language, parse_date
from .text_fold import WORD, fold, split_words, stop_words, words_of

LANGUAGE = "xx"
"""spaCy's code for "multi-language": every recogniser here works on nl, fr and en alike."""


class Entity(StrEnum):
    """Kinds of redacted span, most sensitive first (the order resolves overlaps)."""

    ID = "ID"
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    ADDRESS = "ADDRESS"
    NAME = "NAME"
    DATE = "DATE"

    @property
    def token(self) -> str:
        return f"<{self.value}>"


_PRIORITY = {entity: rank for rank, entity in enumerate(Entity)}


# -- deny-lists ---------------------------------------------------------------------------

_TITLES = frozenset(
    words_of(
        "dr dokter docteur prof professor mr mrs ms miss mme mlle mevr mevrouw dhr meneer "
        "mijnheer monsieur madame m mw"
    )
)
_PARTICLES = frozenset(
    words_of("van von de den der des du le la les d l ten ter vande vanden vander")
)
_NUMBER_RUN = re.compile(r"(?<![\w+])(\+)?\d+(?:[ ./-]\d+)*(?!\w)")
_MAX_GAP = 3


class DenyList:
    """Identifiers known from structured data, to be found again in text.

    Word sequences are stored folded; numbers as their digits (a Belgian phone number
    also as its +32 and 0 forms), so any spelling of the same number matches.
    """

    def __init__(self, common_words: Iterable[str] = ()) -> None:
        self.common_words = frozenset(fold(w) for w in common_words)
        self._phrases: dict[tuple[str, ...], tuple[Entity, bool]] = {}
        self._longest: dict[str, int] = {}
        self._numbers: dict[str, Entity] = {}

    def __repr__(self) -> str:  # never the values
        return f"DenyList({len(self._phrases)} phrases, {len(self._numbers)} numbers)"

    # building

    def add_person(self, first: str | None, last: str | None) -> None:
        """A person's given and family names: each alone, and both in either order."""
        given = _strip_titles(split_words(first or ""))
        family = _strip_titles(split_words(last or ""))
        if given and family:
            self._phrase(given + family, Entity.NAME)
            self._phrase(family + given, Entity.NAME)
        for part in (given, family):
            if part:
                self._phrase(part, Entity.NAME)
                for word in part:
                    if word not in _PARTICLES:
                        self._phrase((word,), Entity.NAME)

    def add_person_name(self, name: str | None) -> None:
        """A whole name such as "Dr. Arne Van den Bossche" (first word = given name)."""
        words = _strip_titles(split_words(name or ""))
        if words:
            self.add_person(words[0], " ".join(words[1:]))

    def add_address(self, address: str | None) -> None:
        """ "Street 12, 1000 Town": the whole, each comma-separated part, and each part
        without its numbers (the street name; the town)."""
        if not address:
            return
        self._phrase(split_words(address), Entity.ADDRESS)
        for part in address.split(","):
            words = split_words(part)
            self._phrase(words, Entity.ADDRESS)
            self._phrase(tuple(w for w in words if not _is_number(w)), Entity.ADDRESS)

    def add_number(self, value: str | None, entity: Entity) -> None:
        """A phone or national number (or any other number) in any spelling."""
        text = value or ""
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) < 6:
            return
        self._numbers[digits] = entity
        if digits.startswith("32") and text.lstrip().startswith("+"):
            self._numbers["0" + digits[2:]] = entity
        elif digits.startswith("0") and not digits.startswith("00"):
            self._numbers["32" + digits[1:]] = entity

    def add_text(self, value: str | None, entity: Entity) -> None:
        """Any other identifier, matched as a whole word sequence."""
        self._phrase(split_words(value or ""), entity)

    def _phrase(self, words: tuple[str, ...], entity: Entity) -> None:
        if not words or all(w.isdigit() for w in words):
            return
        needs_capital = len(words) == 1 and (
            len(words[0]) < 3 or words[0] in stop_words() or words[0] in self.common_words
        )
        known = self._phrases.get(words)
        if known is not None:
            entity = min(entity, known[0], key=_PRIORITY.__getitem__)
        self._phrases[words] = (entity, needs_capital)
        self._longest[words[0]] = max(self._longest.get(words[0], 0), len(words))

    # matching

    def find(self, text: str) -> list[tuple[int, int, Entity]]:
        """Spans of `text` holding a listed identifier."""
        found = self._find_words(text)
        if self._numbers:
            found += self._find_numbers(text)
        return found

    def _find_words(self, text: str) -> list[tuple[int, int, Entity]]:
        folded = fold(text)
        spans = [m.span() for m in WORD.finditer(folded)]
        words = [folded[s:e] for s, e in spans]
        found: list[tuple[int, int, Entity]] = []
        i = 0
        while i < len(words):
            longest = self._longest.get(words[i], 0)
            matched = 0
            for n in range(min(longest, len(words) - i), 0, -1):
                if n > 1 and not _close(text, spans[i : i + n]):
                    continue
                hit = self._phrases.get(tuple(words[i : i + n]))
                if hit is None:
                    continue
                entity, needs_capital = hit
                if needs_capital and not text[spans[i][0]].isupper():
                    continue
                found.append((spans[i][0], spans[i + n - 1][1], entity))
                matched = n
                break
            i += max(matched, 1)
        return found

    def _find_numbers(self, text: str) -> list[tuple[int, int, Entity]]:
        found: list[tuple[int, int, Entity]] = []
        for run in _NUMBER_RUN.finditer(text):
            groups = [m.span() for m in re.finditer(r"\d+", text[run.start() : run.end()])]
            base = run.start()
            i = 0
            while i < len(groups):
                for j in range(len(groups), i, -1):
                    digits = "".join(text[base + s : base + e] for s, e in groups[i:j])
                    entity = self._numbers.get(digits)
                    if entity is not None:
                        start = run.start() if i == 0 else base + groups[i][0]
                        found.append((start, base + groups[j - 1][1], entity))
                        i = j - 1
                        break
                i += 1
        return found


def _strip_titles(words: tuple[str, ...]) -> tuple[str, ...]:
    while words and words[0] in _TITLES:
        words = words[1:]
    return words


def _is_number(word: str) -> bool:
    """House numbers, postcodes and boxes: "12", "12a", "bus", "bte"."""
    return word[:1].isdigit() or word in {"bus", "bte", "b"}


def _close(text: str, spans: list[tuple[int, int]]) -> bool:
    """Words of one phrase are separated by at most a few spaces or punctuation, one line."""
    for (_, end), (start, _) in itertools.pairwise(spans):
        gap = text[end:start]
        if len(gap) > _MAX_GAP or "\n" in gap:
            return False
    return True


# -- presidio --------------------------------------------------------------------------------

_NAME_WORD = r"\p{Lu}[\w'\u2019-]+"
_LOWER_PARTICLE = r"(?:van|von|de|den|der|des|du|le|la|ter|ten)"
_TITLED_NAME = (
    r"(?<=\b(?:Dr|Dokter|Docteur|Prof|Professor|Mr|Mrs|Ms|Mme|Mlle|Mevr|Mevrouw|Dhr|Meneer|"
    r"Monsieur|Madame|Mw)\.?\s{1,3}|\bM\.\s{1,3})"
    rf"{_NAME_WORD}(?:[ ](?:{_LOWER_PARTICLE}[ ])*{_NAME_WORD}){{0,3}}"
)
_NL_STREET = (
    r"(?:straat|laan|baan|weg|plein|dreef|lei|steenweg|hof|singel|ring|kaai|markt|pad|dijk|"
    r"veld|berg|park|gracht|vest|kade|dam|wal|hoek|poort|kouter|plaats|heide|dries|akker|"
    r"donk|beek|broek|hout|wijk|erf|boulevard)"
)
_FR_STREET = (
    r"(?:[Rr]ue|[Aa]venue|[Cc]hauss[ée]e|[Bb]oulevard|[Aa]ll[ée]e|[Ii]mpasse|Av\.|Chemin|"
    r"Place|Bd|Quai|Square|Route|Clos|Dr[èe]ve|Sentier)"
)
"""French street words; those that are also common words only with a capital."""
_HOUSE = r"\d{1,4}(?:\s?[a-zA-Z](?!\w))?(?:\s*(?:bus|bte|b\.?)\s*\d+)?"
ADDRESS_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "nl-street",
        rf"(?:\p{{Lu}}[\w'\u2019-]*\s+){{0,2}}\p{{Lu}}[\w'\u2019-]*{_NL_STREET}\s+{_HOUSE}",
    ),
    ("fr-street", rf"\b{_FR_STREET}\s+[^\n,;]{{1,40}}?\s{_HOUSE}(?!\d)"),
    ("fr-street-number-first", rf"\b\d{{1,4}},?\s+{_FR_STREET}\s+[^\n,;.()]{{1,40}}"),
    (
        "en-street",
        r"\b\d{1,4}\s+(?:\p{Lu}[\w'\u2019-]*\s+){1,3}"
        r"(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|Lane|Drive|Way|Place|Square|Court)\b",
    ),
    (
        "postcode-town",
        r"(?<=,\s?|\bB-)[1-9]\d{3}\s+\p{Lu}[\w'\u2019-]*(?:[ -]\p{Lu}[\w'\u2019-]*){0,3}",
    ),
)
_NRN_SHAPE = r"(?<![\d.])\d{2}[ .]?\d{2}[ .]?\d{2}[ .-]?\d{3}[ .]?\d{2}(?![\d]|[.]\d)"
_BE_PHONE = (
    r"(?<![\w+]|\d[./-])(?!\d{1,2}([/.-])\d{1,2}\1\d{2,4}(?!\d))"  # never inside a date
    r"(?:\+32[ ./-]?(?:\(0\)[ ]?)?|0)[1-9]\d{0,2}(?:[ ./-]?\d{2,3}){2,4}(?![\w]|[./-]\d)"
)


class _NationalNumberRecognizer(PatternRecognizer):
    """Belgian national register numbers in any grouping, kept only when the check fits."""

    def validate_result(self, pattern_text: str) -> bool:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        if len(digits) != 11:
            return False
        body, check = digits[:9], int(digits[9:])
        return check in (97 - int(body) % 97, 97 - int("2" + body) % 97)


class _BelgianPhoneRecognizer(PatternRecognizer):
    """Belgian numbers as people write them; 9 or 10 digits once +32 is read as 0."""

    def validate_result(self, pattern_text: str) -> bool:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        if pattern_text.startswith("+32"):
            digits = "0" + digits[2:]
        return len(digits) in (9, 10)


class _NoContext(ContextAwareEnhancer):
    """Scores are not used (every flag is redacted), so context words change nothing."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0, 0, 0)

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        return raw_results


class DenyListRecognizer(EntityRecognizer):
    """presidio's view of a `DenyList` (whole words, case- and accent-insensitive)."""

    def __init__(self, deny_list: DenyList, name: str = "DenyListRecognizer") -> None:
        self.deny_list = deny_list
        super().__init__(
            supported_entities=[e.value for e in Entity],
            name=name,
            supported_language=LANGUAGE,
        )

    def load(self) -> None:
        """Nothing to load: the lists are built from the structured data."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        return [
            RecognizerResult(entity.value, start, end, 1.0)
            for start, end, entity in self.deny_list.find(text)
        ]


@dataclass(frozen=True)
class RedactorConfig:
    """What to look for beyond the deny-lists (defaults fit the demo hospital)."""

    id_patterns: tuple[str, ...] = (r"MRN\d{7}",)
    """Hospital and record ids, matched as whole words, case-insensitively."""
    phone_regions: tuple[str, ...] = ("BE",)
    """Regions whose national spellings python-phonenumbers looks for (international
    "+<country>" numbers are found whatever the region); each costs about 1 ms a note."""
    common_words: frozenset[str] = frozenset()
    """More words that a one-word name must be capitalised to match (folded)."""


def build_recognizers(config: RedactorConfig) -> list[EntityRecognizer]:
    """Every pattern recogniser of the redactor (the deny-lists are added per `Redactor`)."""
    insensitive = int(re.DOTALL | re.MULTILINE | re.IGNORECASE)
    sensitive = int(re.DOTALL | re.MULTILINE)
    ids = [(f"id-{i}", rf"(?<!\w){p}(?!\w)") for i, p in enumerate(config.id_patterns)]
    ids += [
        ("letters-and-digits", r"(?<!\w)[a-z]{1,5}-?\d{6,}(?!\w)"),
        ("long-number", r"(?<![\d.,])\d{9,}(?![.,]?\d)"),
        ("national-number-formatted", r"(?<!\d)\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}(?!\d)"),
    ]
    email = r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    specs: list[tuple[type[PatternRecognizer], Entity, str, list[tuple[str, str]], int]] = [
        (PatternRecognizer, Entity.ID, "ids", ids, insensitive),
        (
            _NationalNumberRecognizer,
            Entity.ID,
            "national-numbers",
            [("nrn", _NRN_SHAPE)],
            insensitive,
        ),
        (PatternRecognizer, Entity.EMAIL, "emails", [("email", email)], insensitive),
        (_BelgianPhoneRecognizer, Entity.PHONE, "be-phones", [("be", _BE_PHONE)], insensitive),
        (PatternRecognizer, Entity.ADDRESS, "addresses", list(ADDRESS_PATTERNS), sensitive),
        (PatternRecognizer, Entity.NAME, "titled-names", [("titled", _TITLED_NAME)], sensitive),
        (PatternRecognizer, Entity.DATE, "dates", list(DATE_PATTERNS), insensitive),
    ]
    recognizers: list[EntityRecognizer] = [
        cls(
            supported_entity=entity.value,
            name=name,
            supported_language=LANGUAGE,
            patterns=[Pattern(name=n, regex=p, score=1.0) for n, p in patterns],
            global_regex_flags=flags,
        )
        for cls, entity, name, patterns, flags in specs
    ]
    phones = PhoneRecognizer(
        supported_language=LANGUAGE,
        supported_entity=Entity.PHONE.value,
        supported_regions=config.phone_regions,
    )
    return [*recognizers, phones]


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: Counter[str]
    """Spans by kind: "NAME redacted", "DATE shifted", ... (never values)."""


class Redactor:
    """Redacts notes with one fixed set of recognisers and one deny-list."""

    def __init__(self, deny_list: DenyList, config: RedactorConfig | None = None) -> None:
        self.config = config or RedactorConfig()
        recognizers = [*build_recognizers(self.config), DenyListRecognizer(deny_list)]
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])
        engine = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=engine,
            supported_languages=[LANGUAGE],
            context_aware_enhancer=_NoContext(),
        )
        self._entities = [e.value for e in Entity]

    def spans(self, text: str) -> list[tuple[int, int, Entity]]:
        """Merged flagged spans of `text`: overlapping flags become one, of the most
        sensitive kind among them."""
        results = self._analyzer.analyze(
            text, language=LANGUAGE, entities=self._entities, score_threshold=0.0
        )
        flagged = sorted((r.start, r.end, Entity(r.entity_type)) for r in results)
        dates = [(s, e) for s, e, kind in flagged if kind is Entity.DATE]
        # python-phonenumbers reads some dates ("06.10.1978", "03/04/2024 10") as phone
        # numbers: where they overlap, the date wins (digits beyond it are not a number).
        flagged = [
            (s, e, kind)
            for s, e, kind in flagged
            if kind is not Entity.PHONE or not any(s < de and ds < e for ds, de in dates)
        ]
        merged: list[tuple[int, int, Entity]] = []
        for start, end, entity in flagged:
            if merged and start < merged[-1][1]:
                last_start, last_end, last = merged[-1]
                kind = min(last, entity, key=_PRIORITY.__getitem__)
                merged[-1] = (last_start, max(last_end, end), kind)
            else:
                merged.append((start, end, entity))
        return merged

    def redact(
        self,
        text: str,
        *,
        birth_dates: Collection[date] = (),
        shift: Callable[[date], date] | None = None,
    ) -> Redacted:
        """`text` with every flagged span replaced.

        A full date is rewritten by `shift` in its own spelling, unless there is no
        `shift` (dates generalised), it is one of `birth_dates` or follows a birth cue
        ("born", "geboren", "né(e) le", "°", "DOB"), or it cannot be read as a calendar
        date: then it becomes `<DATE>`, like every partial date.
        """
        text = unicodedata.normalize("NFC", text)  # so accents are one character each
        counts: Counter[str] = Counter()
        out: list[str] = []
        last = 0
        language: str | None = None
        for start, end, entity in self.spans(text):
            replacement = entity.token
            if entity is Entity.DATE and shift is not None:
                if language is None:
                    language = guess_language(text)
                shifted = _shift(
                    text, start, end, language=language, birth_dates=birth_dates, shift=shift
                )
                if shifted is not None:
                    replacement = shifted
            kind = "DATE shifted" if replacement != entity.token else f"{entity.value} redacted"
            counts[kind] += 1
            out += [text[last:start], replacement]
            last = end
        out.append(text[last:])
        return Redacted("".join(out), counts)


def _shift(
    text: str,
    start: int,
    end: int,
    *,
    language: str,
    birth_dates: Collection[date],
    shift: Callable[[date], date],
) -> str | None:
    parsed = parse_date(text[start:end], language)
    if parsed is None or parsed.value in birth_dates:
        return None
    line_start = text.rfind("\n", 0, start) + 1
    if BIRTH_CUE.search(fold(text[max(line_start, start - 40) : start])):
        return None
    try:
        return parsed.render(shift(parsed.value))
    except ValueError:
        return None
