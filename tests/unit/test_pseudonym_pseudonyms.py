"""Pseudonyms: every fast path equals the documented HMAC definition; one per patient per
project, stable across instances and runs, unlinkable across projects."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tre.pseudonym import pseudonyms
from tre.pseudonym.keys import KeyPurpose, MasterKey, ProjectKey, derive_project_key
from tre.pseudonym.patient_ids import PatientIdError, normalise_patient_id
from tre.pseudonym.pseudonyms import (
    ALPHABET,
    PSEUDONYM_LENGTH,
    Pseudonymiser,
    is_pseudonym,
)

MASTER = MasterKey(bytes(range(32)))
PROJECT = derive_project_key(MASTER, "gbm-2026")
OTHER_PROJECT = derive_project_key(MASTER, "gbm-2027")
PSEUDONYMISER = Pseudonymiser(PROJECT)
BATCH = pseudonyms._BATCH

# Ids as hospitals write them, and the awkward ones: inner line breaks, non-ASCII,
# surrounding white space.
patient_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)


def reference(key: ProjectKey, patient_id: str) -> str:
    """The module docstring's definition, with the standard library's `hmac.new`."""
    digest = hmac.new(
        key.subkey(KeyPurpose.pseudonym), patient_id.strip().encode("utf-8"), hashlib.sha256
    ).digest()
    return "P" + "".join(ALPHABET[b & 31] for b in digest[:20])


@settings(database=None, deadline=None, max_examples=300)
@given(st.lists(patient_ids, max_size=50))
def test_batch_and_single_paths_equal_the_reference(ids: list[str]) -> None:
    expected = [reference(PROJECT, i) for i in ids]
    assert PSEUDONYMISER.pseudonymise_many(ids) == expected
    assert [PSEUDONYMISER.pseudonym(i) for i in ids] == expected


@pytest.mark.parametrize("n", [0, 1, 2, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH + 3])
def test_batch_path_equals_the_reference_across_chunk_boundaries(n: int) -> None:
    ids = [f"BE-UZL-{i:07d}" for i in range(n)]
    result = PSEUDONYMISER.pseudonymise_many(ids)
    assert len(result) == n
    assert result == [reference(PROJECT, i) for i in ids]


def test_ids_with_inner_line_breaks_take_the_slow_path_and_still_match() -> None:
    ids = ["a\nb", "a", "b", "x\r\ny", "\n c \n"]
    assert PSEUDONYMISER.pseudonymise_many(ids) == [reference(PROJECT, i) for i in ids]
    assert PSEUDONYMISER.pseudonym("a\nb") != PSEUDONYMISER.pseudonym("a")


def test_known_answer_is_stable_across_runs() -> None:
    # Pinned value: if this changes, every site's pseudonyms have changed.
    assert PSEUDONYMISER.pseudonym("BE-UZL-0000042") == "PV8XPW463AYT8YNW5YZQH"


def test_any_iterable_is_accepted() -> None:
    ids = (f"id{i}" for i in range(5))
    assert PSEUDONYMISER.pseudonymise_many(ids) == [reference(PROJECT, f"id{i}") for i in range(5)]
    assert PSEUDONYMISER.pseudonymise_many(("a", "b")) == [
        reference(PROJECT, "a"),
        reference(PROJECT, "b"),
    ]


@settings(database=None, deadline=None)
@given(patient_ids)
def test_format_is_p_and_20_crockford_digits(patient_id: str) -> None:
    value = PSEUDONYMISER.pseudonym(patient_id)
    assert len(value) == PSEUDONYM_LENGTH == 21
    assert is_pseudonym(value)
    assert value[0] == "P"
    assert not set(value[1:]) & set("ILOU")


def test_is_pseudonym_rejects_other_shapes() -> None:
    assert not is_pseudonym("P" + "0" * 19)
    assert not is_pseudonym("P" + "0" * 21)
    assert not is_pseudonym("Q" + "0" * 20)
    assert not is_pseudonym("P" + "I" * 20)
    assert not is_pseudonym("p" + "0" * 20)


def test_same_patient_same_pseudonym_across_instances_and_modalities() -> None:
    again = Pseudonymiser(derive_project_key(MasterKey(bytes(range(32))), "gbm-2026"))
    ids = [f"BE-UZL-{i:07d}" for i in range(100)]
    # e.g. the EMR pass pseudonymises in bulk, the DICOM pass one file at a time.
    assert PSEUDONYMISER.pseudonymise_many(ids) == [again.pseudonym(i) for i in ids]


@pytest.mark.security
def test_projects_cannot_be_linked_by_pseudonym() -> None:
    ids = [f"BE-UZL-{i:07d}" for i in range(2000)]
    ours = PSEUDONYMISER.pseudonymise_many(ids)
    theirs = Pseudonymiser(OTHER_PROJECT).pseudonymise_many(ids)
    assert not set(ours) & set(theirs)
    assert len(set(ours)) == len(ids), "no collisions"


@pytest.mark.security
def test_other_masters_give_other_pseudonyms() -> None:
    other = Pseudonymiser(derive_project_key(MasterKey(bytes(32)), "gbm-2026"))
    assert other.pseudonym("BE-UZL-0000042") != PSEUDONYMISER.pseudonym("BE-UZL-0000042")


@pytest.mark.security
def test_the_pseudonym_key_is_not_another_purposes_key() -> None:
    digest_under = {
        purpose: hmac.new(PROJECT.subkey(purpose), b"BE-UZL-0000042", hashlib.sha256).digest()
        for purpose in KeyPurpose
    }
    value = PSEUDONYMISER.pseudonym("BE-UZL-0000042")
    matches = [
        p
        for p, d in digest_under.items()
        if "P" + d[:20].translate(pseudonyms._TO_DIGIT).decode() == value
    ]
    assert matches == [KeyPurpose.pseudonym]


def test_surrounding_white_space_is_ignored_and_nothing_else() -> None:
    p = PSEUDONYMISER.pseudonym
    assert p("  12345\t\n") == p("12345") == p("\u00a012345\u2003")
    assert p("ab") != p("AB")
    assert p("0042") != p("42")
    assert p("a b") != p("ab")
    assert p("caf\u00e9") != p("cafe\u0301"), "no Unicode normalisation"
    assert PSEUDONYMISER.pseudonymise_many([" 12345 ", "12345"]) == [p("12345")] * 2


@pytest.mark.parametrize("bad", ["", " ", "\t\n", "\u2003"])
def test_empty_ids_are_rejected(bad: str) -> None:
    with pytest.raises(PatientIdError) as exc:
        PSEUDONYMISER.pseudonym(bad)
    assert str(exc.value) == (
        f"patient id {bad!r} is empty or only white space; every record needs its hospital "
        "patient id"
    )


def test_batch_errors_name_the_position_and_return_nothing() -> None:
    ids = [f"id{i}" for i in range(BATCH + 10)]
    ids[BATCH + 4] = "  "
    with pytest.raises(PatientIdError) as exc:
        PSEUDONYMISER.pseudonymise_many(ids)
    assert str(exc.value) == (
        f"patient id at position {BATCH + 4}: patient id '  ' is empty or only white space; "
        "every record needs its hospital patient id"
    )


def test_non_strings_are_rejected_with_their_position() -> None:
    with pytest.raises(PatientIdError) as exc:
        PSEUDONYMISER.pseudonymise_many(["a", 12345])  # type: ignore[list-item]
    assert str(exc.value) == "patient id at position 1: a patient id must be a string, got int"
    with pytest.raises(PatientIdError, match="must be a string, got bytes"):
        PSEUDONYMISER.pseudonym(b"12345")  # type: ignore[arg-type]


def test_unencodable_ids_are_rejected_without_echoing_them() -> None:
    with pytest.raises(PatientIdError) as exc:
        PSEUDONYMISER.pseudonymise_many(["ok", "secret\ud800id"])
    assert str(exc.value) == (
        "patient id at position 1: a patient id cannot be encoded as UTF-8 "
        "(surrogates not allowed at character 6)"
    )
    assert "secret" not in str(exc.value)


def test_a_single_string_is_not_mistaken_for_many_ids() -> None:
    with pytest.raises(TypeError, match="not a single id"):
        PSEUDONYMISER.pseudonymise_many("12345")


@pytest.mark.security
def test_repr_shows_project_and_key_id_only() -> None:
    text = repr(PSEUDONYMISER)
    assert text == "Pseudonymiser(project_id='gbm-2026', key_id='4d82fc21e0bea442')"
    assert PROJECT.subkey(KeyPurpose.pseudonym).hex() not in text


def test_normalise_patient_id_is_strip() -> None:
    assert normalise_patient_id(" a b ") == "a b"
