"""DICOM PS3.15 Table E.1-1, compiled once per dataset into one action per attribute.

Invariant: every attribute the table lists gets the basic profile's action unless an
option the dataset asks for says otherwise, and then the more protective of the
options' actions wins; attributes the table does not list are kept, except those whose
value representation can carry an identity on its own (person names, dates, instance
UIDs) or that the DICOM dictionary does not know, which are treated as the table would
treat an identifier. The table is loaded from the packaged JSON, never typed by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from importlib import resources
from typing import Any

from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement

from tre.policy.datasets import DicomOption

from .errors import IngestError

PROFILE_RESOURCE = ("data", "dicom_confidentiality_profile.json")
"""Inside the `tre.ingest` package; PROVENANCE.md next to it says where it comes from."""
PROFILE_SOURCE = "PS3.15 Table E.1-1 (innolitics/dicom-standard 7f4749d)"

OPTION_COLUMNS: Mapping[DicomOption, str] = {
    DicomOption.clean_graphics: "cleanGraphOpt",
    DicomOption.clean_structured_content: "cleanStructContOpt",
    DicomOption.clean_descriptors: "cleanDescOpt",
    DicomOption.retain_longitudinal_full_dates: "rtnLongFullDatesOpt",
    DicomOption.retain_longitudinal_modified_dates: "rtnLongModifDatesOpt",
    DicomOption.retain_patient_characteristics: "rtnPatCharsOpt",
    DicomOption.retain_device_identity: "rtnDevIdOpt",
    DicomOption.retain_uids: "rtnUIDsOpt",
    DicomOption.retain_safe_private: "rtnSafePrivOpt",
    DicomOption.retain_institution_identity: "rtnInstIdOpt",
}
"""Each policy option and the column of Table E.1-1 that holds its actions."""

NOT_IMPLEMENTED: frozenset[DicomOption] = frozenset(
    {DicomOption.clean_graphics, DicomOption.clean_structured_content}
)
"""Options whose cleaning we cannot do (graphics, structured content): their attributes
get the basic profile's action instead, and the option is not claimed in the output."""

# Columns whose "C" means: keep the attribute only once its free text is cleaned. We
# cannot tell identifying free text from harmless free text, so cleaning removes it.
_FREE_TEXT_COLUMNS = frozenset({"cleanDescOpt", "rtnPatCharsOpt", "rtnDevIdOpt"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "UR", "SV", "UV"})
_CLASS_UID_KEYWORD = re.compile(r"(ClassUID|SyntaxUID|SyntaxUIDInFile|ClassUIDInFile)$")


class Action(IntEnum):
    """What happens to one attribute."""

    KEEP = 0
    REMOVE = 1  # X
    EMPTY = 2  # Z: present, zero length (a sequence without items)
    DUMMY = 3  # D: a fixed value consistent with the VR
    UID = 4  # U: the project's keyed UID
    DATE = 5  # C of the modified-dates option: shifted or generalised per patient
    RECURSE = 6  # a sequence kept, each of its items de-identified the same way


@dataclass(frozen=True, slots=True)
class Rule:
    """The action for one attribute, what to do when a DATE value cannot be moved, and the
    attribute's VR from the DICOM dictionary ("" if unknown or ambiguous)."""

    action: Action
    fallback: Action
    vr: str = ""


KEEP = Rule(Action.KEEP, Action.KEEP)
REMOVE = Rule(Action.REMOVE, Action.REMOVE)
DUMMY = Rule(Action.DUMMY, Action.DUMMY)
UID = Rule(Action.UID, Action.UID)
RECURSE = Rule(Action.RECURSE, Action.RECURSE)

_UNLISTED_BY_VR: Mapping[str, Rule] = {"SQ": RECURSE, "PN": DUMMY}
"""Unlisted sequences are kept and de-identified inside; unlisted person names are not kept."""

DUMMY_TEXT = "ANONYMIZED"
DUMMY_VALUES: Mapping[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
    "AT": 0,
}
"""D values for VRs where "ANONYMIZED" would not be valid."""


@dataclass(frozen=True)
class SafePrivate:
    """One allow-listed private element: its block's creator, group and element offset."""

    creator: str
    group: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> SafePrivate:
        """Parse '<private creator>/<gggg>,xx<ee>' (e.g. 'SIEMENS CSA HEADER/0029,xx08')."""
        match = re.fullmatch(r"(.+)/([0-9A-Fa-f]{4}),[xX]{2}([0-9A-Fa-f]{2})", text.strip())
        group = int(match.group(2), 16) if match else 0
        if match is None or not group % 2 or group < 0x0009 or group == 0xFFFF:
            raise IngestError(
                f"safe_private_tags: '{text}' is not '<private creator>/<gggg>,xx<ee>' "
                "with an odd group above 0008 (e.g. 'SIEMENS CSA HEADER/0029,xx08')"
            )
        return cls(match.group(1).strip(), group, int(match.group(3), 16))


@dataclass
class CompiledProfile:
    """Table E.1-1 with the dataset's options applied: a tag -> Rule lookup."""

    options: frozenset[DicomOption]
    dates_shifted: bool
    rules: dict[int, Rule]
    safe_private: frozenset[SafePrivate] = frozenset()
    _unlisted: dict[int, Rule] = field(default_factory=dict)

    @property
    def claimed_options(self) -> tuple[DicomOption, ...]:
        """The options actually applied, in the order of CID 7050."""
        return tuple(o for o in OPTION_COLUMNS if o in self.options and o not in NOT_IMPLEMENTED)

    def rule(self, tag: int) -> Rule:
        """The rule for a public (even group) tag; private tags are handled by the caller."""
        found = self.rules.get(tag)
        if found is not None:
            return found
        found = self._unlisted.get(tag)
        if found is None:
            found = self._unlisted[tag] = _with_vr(self._rule_for_unlisted(tag), _vr(tag))
        return found

    def _rule_for_unlisted(self, tag: int) -> Rule:
        group, element = tag >> 16, tag & 0xFFFF
        # Curves (X) and whole overlay planes: PS3.15 removes curve and overlay data, and
        # the rest of an overlay group means nothing without it. Group lengths are stale
        # once elements go. A public attribute the dictionary does not know: fail closed.
        vr = _vr(tag)
        if (
            0x5000 <= group <= 0x50FF
            or 0x6000 <= group <= 0x60FF
            or (element == 0 and group != 0x0002)
            or vr == "UN"
        ):
            return REMOVE
        if vr == "UI":
            keep = DicomOption.retain_uids in self.options or _CLASS_UID_KEYWORD.search(
                dictionary_keyword(tag)
            )
            return KEEP if keep else UID
        if vr in ("DA", "DT"):
            return date_rule(self, Action.REMOVE, vr)
        return _UNLISTED_BY_VR.get(vr, KEEP)


def date_rule(profile: CompiledProfile, basic: Action, vr: str) -> Rule:
    """The rule for a date or time attribute whose basic action is `basic`."""
    if DicomOption.retain_longitudinal_full_dates in profile.options:
        return KEEP
    if DicomOption.retain_longitudinal_modified_dates in profile.options:
        if vr == "TM" and profile.dates_shifted:
            return KEEP  # whole-day shifts leave the time of day as it was
        if vr in ("DA", "DT"):
            return Rule(Action.DATE, basic)
    return Rule(basic, basic)


def load_table() -> list[dict[str, str]]:
    """The packaged Table E.1-1, one dict per attribute."""
    return _load_table()


@cache
def _load_table() -> list[dict[str, str]]:
    folder, name = PROFILE_RESOURCE
    text = resources.files("tre.ingest").joinpath(folder).joinpath(name).read_text("utf-8")
    table: list[dict[str, str]] = json.loads(text)
    return table


def compile_profile(
    options: Iterable[DicomOption],
    *,
    dates_shifted: bool = True,
    safe_private_tags: Iterable[str] = (),
) -> CompiledProfile:
    """Resolve every listed attribute's action under `options`.

    `dates_shifted` says whether the modified-dates option moves dates by whole days
    (times of day then stay) or generalises them to a month or year (times then go).
    """
    chosen = frozenset(options)
    profile = CompiledProfile(options=chosen, dates_shifted=dates_shifted, rules={})
    if DicomOption.retain_safe_private in chosen:
        profile.safe_private = frozenset(SafePrivate.parse(t) for t in safe_private_tags)
    for entry in _load_table():
        tag = _exact_tag(entry["tag"])
        if tag is None:
            continue  # masks: curves, overlays and private groups, ruled by group
        vr = _vr(tag)
        profile.rules[tag] = _with_vr(_resolve(entry, vr, profile), vr)
    return profile


def _resolve(entry: Mapping[str, str], vr: str, profile: CompiledProfile) -> Rule:
    basic = _basic_action(entry["basicProfile"], vr)
    if "rtnLongFullDatesOpt" in entry:
        # A date or time: only the date options decide; retaining device identity must
        # not let a calibration date through when the dataset's dates are protected.
        if vr in _DATE_VRS:
            return date_rule(profile, basic, vr)
        if DicomOption.retain_longitudinal_full_dates in profile.options:
            return KEEP
        return Rule(basic, basic)
    said: list[Action] = []
    for option in profile.options - NOT_IMPLEMENTED:
        column = OPTION_COLUMNS[option]
        code = entry.get(column)
        if code == "K":
            said.append(Action.RECURSE if vr == "SQ" else Action.KEEP)
        elif code == "C" and column in _FREE_TEXT_COLUMNS:
            said.append(_cleaned(entry["basicProfile"], vr))
    if not said:
        return Rule(basic, basic)
    # The most protective of the options' answers: a cleaned (removed, emptied or
    # dummy) value wins over a kept one.
    cleaned = [a for a in said if a not in (Action.KEEP, Action.RECURSE)]
    action = cleaned[0] if cleaned else said[0]
    return Rule(action, action)


def _basic_action(code: str, vr: str) -> Action:
    """The basic profile's action. Of a combination (X/Z, X/D, Z/D, X/Z/D) the last one,
    which keeps the attribute for the strictest IODs, since we do not know the IOD's
    attribute types; a sequence is emptied rather than given a made-up item, except
    X/Z/U*, whose items keep their (remapped) references."""
    letters = code.replace("*", "").split("/")
    if vr == "SQ":
        if "U" in letters:
            return Action.RECURSE
        return Action.REMOVE if letters == ["X"] else Action.EMPTY
    last = letters[-1]
    if last == "U" or (last == "D" and vr == "UI"):
        return Action.UID
    if last == "D":
        return Action.EMPTY if vr in _BINARY_VRS else Action.DUMMY
    return {"X": Action.REMOVE, "Z": Action.EMPTY, "K": Action.KEEP}[last]


def _cleaned(code: str, vr: str) -> Action:
    """Cleaning free text we cannot understand: remove it where the profile allows,
    else leave it empty, else a dummy."""
    letters = code.replace("*", "").split("/")
    if "X" in letters:
        return Action.REMOVE
    if "Z" in letters or vr == "SQ" or vr in _BINARY_VRS:
        return Action.EMPTY
    return Action.DUMMY


def _exact_tag(text: str) -> int | None:
    match = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", text.strip().upper())
    return int(match.group(1) + match.group(2), 16) if match else None


def _with_vr(rule: Rule, vr: str) -> Rule:
    return Rule(rule.action, rule.fallback, "" if " " in vr else vr)


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def dummy_value(vr: str) -> Any:
    """The D value for `vr`."""
    return DUMMY_VALUES.get(vr, DUMMY_TEXT)


TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}
)
"""VRs whose value is text, so a new value can be written as bytes in any transfer syntax."""


def raw_text(item: DataElement | RawDataElement | None) -> str:
    """An element's value as text, values joined by backslashes, without converting a raw
    element (a converted element is encoded one by one on writing, a raw one is copied)."""
    if item is None or item.value is None:
        return ""
    value = item.value
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\0 ")
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return "\\".join(str(v) for v in value)
    return str(value)
