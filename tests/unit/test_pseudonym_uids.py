"""DICOM UID remapping: valid, short, stable within a project, different across projects."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import UID

from tre.pseudonym.keys import KeyPurpose, MasterKey, derive_project_key
from tre.pseudonym.uids import UidError, UidMapper

MASTER = MasterKey(bytes(range(32)))
PROJECT = derive_project_key(MASTER, "gbm-2026")
MAPPER = UidMapper(PROJECT)

# Real UIDs, and the malformed ones archives also hold (leading zeros, letters, long).
source_uids = st.one_of(
    st.lists(st.integers(min_value=0, max_value=10**12), min_size=2, max_size=12).map(
        lambda parts: ".".join(map(str, parts))
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=80).filter(
        lambda s: s.strip(" \t\r\n\x00") != ""
    ),
)


@settings(database=None, deadline=None, max_examples=300)
@given(source_uids)
def test_new_uids_are_valid_dicom_uids_within_64_characters(source: str) -> None:
    new = MAPPER.remap(source)
    assert new.startswith("2.25.")
    assert len(new) <= 64
    assert UID(new).is_valid


@settings(database=None, deadline=None)
@given(source_uids)
def test_new_uids_are_version_8_uuids_from_the_keyed_hmac(source: str) -> None:
    new = MAPPER.remap(source)
    value = uuid.UUID(int=int(new.removeprefix("2.25.")))
    assert value.version == 8
    assert value.variant == uuid.RFC_4122
    digest = hmac.new(
        PROJECT.subkey(KeyPurpose.dicom_uid),
        source.strip(" \t\r\n\x00").encode("utf-8"),
        hashlib.sha256,
    ).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    assert value.bytes == bytes(raw)


def test_known_answer_is_stable_across_runs() -> None:
    assert (
        MAPPER.remap("1.2.826.0.1.3680043.8.498.1")
        == "2.25.147327411857606972739670338470168676057"
    )


def test_same_source_same_uid_within_a_project() -> None:
    again = UidMapper(derive_project_key(MasterKey(bytes(range(32))), "gbm-2026"))
    for i in range(100):
        source = f"1.2.840.113619.2.55.3.{i}"
        assert again.remap(source) == MAPPER.remap(source)


def test_padding_is_not_part_of_the_uid() -> None:
    assert MAPPER.remap("1.2.3\x00") == MAPPER.remap(" 1.2.3 ") == MAPPER.remap("1.2.3")


@pytest.mark.security
def test_other_projects_get_unrelated_uids() -> None:
    other = UidMapper(derive_project_key(MASTER, "gbm-2027"))
    sources = [f"1.2.840.113619.2.55.3.{i}" for i in range(1000)]
    ours = {MAPPER.remap(s) for s in sources}
    theirs = {other.remap(s) for s in sources}
    assert len(ours) == len(sources), "no collisions"
    assert not ours & theirs


@pytest.mark.security
def test_new_uids_do_not_contain_the_source() -> None:
    source = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    assert "12345678901234567890" not in MAPPER.remap(source)


@pytest.mark.parametrize("bad", ["", "\x00\x00", "  "])
def test_empty_uids_are_rejected(bad: str) -> None:
    with pytest.raises(UidError) as exc:
        MAPPER.remap(bad)
    assert str(exc.value) == f"DICOM UID {bad!r} is empty"


def test_non_strings_and_unencodable_strings_are_rejected() -> None:
    with pytest.raises(UidError, match="must be a string, got bytes"):
        MAPPER.remap(b"1.2.3")  # type: ignore[arg-type]
    with pytest.raises(UidError, match="cannot be encoded as UTF-8"):
        MAPPER.remap("1.2.\ud800")


def test_repr_shows_no_key() -> None:
    assert repr(MAPPER) == "UidMapper(project_id='gbm-2026', key_id='4d82fc21e0bea442')"
