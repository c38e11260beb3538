"""Key custody: the master key file is private, never overwritten, read fail-closed; keys
are derived as documented and never shown."""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tre.pseudonym.keys import (
    KeyCustodyError,
    KeyPurpose,
    MasterKey,
    ProjectKey,
    create_master_key,
    default_master_key_path,
    derive_project_key,
    key_id,
    load_master_key,
)

FIXED_MASTER = bytes(range(32))
VALID_TEXT = FIXED_MASTER.hex() + "\n"


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 written out with the standard library, as an independent reference."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def write_key_file(path: Path, text: str | bytes = VALID_TEXT, mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(text.encode("ascii") if isinstance(text, str) else text)
    path.chmod(mode)
    return path


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# Creating


def test_create_writes_64_hex_digits_and_a_newline_mode_0600_in_a_0700_dir(
    tmp_path: Path, umask_022: None
) -> None:
    path = tmp_path / "keys" / "master.key"
    master = create_master_key(path)
    text = path.read_text(encoding="ascii")
    assert len(text) == 65 and text.endswith("\n")
    assert bytes.fromhex(text[:-1]) == master._key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"], "no temp file left"
    assert load_master_key(path).key_id == master.key_id


def test_create_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    old = os.umask(0)
    try:
        create_master_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_two_created_keys_differ(tmp_path: Path) -> None:
    a = create_master_key(tmp_path / "a" / "master.key")
    b = create_master_key(tmp_path / "b" / "master.key")
    assert a.key_id != b.key_id


@pytest.mark.security
def test_create_refuses_to_overwrite_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    create_master_key(path)
    before = path.read_bytes()
    with pytest.raises(KeyCustodyError) as exc:
        create_master_key(path)
    assert str(exc.value) == (
        f"{path}: a master key already exists; refusing to overwrite it "
        "(every pseudonym made with it depends on it)"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"]


@pytest.mark.security
def test_create_refuses_a_dangling_symlink_in_place_of_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    path = keys / "master.key"
    path.symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(KeyCustodyError, match="already exists; refusing to overwrite"):
        create_master_key(path)
    assert not (tmp_path / "elsewhere.key").exists()


@pytest.mark.security
def test_create_refuses_a_key_directory_others_can_reach(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    keys.chmod(0o755)
    with pytest.raises(KeyCustodyError) as exc:
        create_master_key(keys / "master.key")
    assert str(exc.value) == (
        f"{keys}: the key directory has mode 0755, so group or others can reach it; "
        f"mode 0700 is required (chmod 700 {keys})"
    )
    assert list(keys.iterdir()) == []


def test_default_path_is_under_keys_dir(tmp_path: Path) -> None:
    assert default_master_key_path(tmp_path / "keys") == tmp_path / "keys" / "master.key"


# Loading: every refusal, with its exact message


def test_load_reads_a_valid_key_with_or_without_the_trailing_newline(tmp_path: Path) -> None:
    with_newline = write_key_file(tmp_path / "k1" / "master.key")
    without = write_key_file(tmp_path / "k2" / "master.key", FIXED_MASTER.hex())
    upper = write_key_file(tmp_path / "k3" / "master.key", FIXED_MASTER.hex().upper() + "\n")
    expected = MasterKey(FIXED_MASTER).key_id
    assert {load_master_key(p).key_id for p in (with_newline, without, upper)} == {expected}


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == f"{path}: the master key file does not exist"


@pytest.mark.security
def test_load_refuses_a_symlink_even_to_a_good_key(tmp_path: Path) -> None:
    target = write_key_file(tmp_path / "real" / "master.key")
    link = tmp_path / "keys" / "master.key"
    link.parent.mkdir(mode=0o700)
    link.symlink_to(target)
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(link)
    assert str(exc.value) == (
        f"{link}: the master key file is a symbolic link; a regular file is required"
    )


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.mkdir()
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == f"{path}: the master key file is not a regular file"


@pytest.mark.security
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o601, 0o610])
def test_load_refuses_a_key_group_or_others_can_use(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", mode=mode)
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == (
        f"{path}: the master key file has mode {mode:04o}, so group or others can read or "
        f"write it; mode 0600 is required (chmod 600 {path})"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_load_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", mode=mode)
    assert load_master_key(path).key_id == MasterKey(FIXED_MASTER).key_id


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (FIXED_MASTER.hex()[:-1] + "\n", 63),
        (FIXED_MASTER.hex() + "00\n", 66),
        (FIXED_MASTER.hex() + "\n\n", 65),
        (FIXED_MASTER.hex() + "\r\n", 65),
        (" " + FIXED_MASTER.hex() + "\n", 65),
        (FIXED_MASTER[:16].hex() + "\n", 32),
    ],
)
def test_load_refuses_a_key_of_the_wrong_length(tmp_path: Path, text: str, found: int) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", text)
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == (
        f"{path}: the master key must be 64 hexadecimal digits (32 bytes), found {found} characters"
    )


def test_load_refuses_a_huge_file_without_reading_it_all(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", "a" * 1_000_000)
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == (
        f"{path}: the master key must be 64 hexadecimal digits (32 bytes), "
        "found more than 4096 characters"
    )


def test_load_refuses_an_empty_file(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", "")
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    assert str(exc.value) == (
        f"{path}: the master key file is empty; expected 64 hexadecimal digits"
    )


@pytest.mark.parametrize(
    "text",
    [
        "g" + FIXED_MASTER.hex()[1:] + "\n",
        FIXED_MASTER.hex()[:62] + " 0\n",
        FIXED_MASTER.hex()[:63] + "\u00e9" + "\n",
        FIXED_MASTER.hex()[:63] + "\x00\n",
    ],
)
def test_load_refuses_a_key_that_is_not_hex_and_does_not_quote_it(
    tmp_path: Path, text: str
) -> None:
    path = write_key_file(tmp_path / "keys" / "master.key", text.encode("latin-1"))
    with pytest.raises(KeyCustodyError) as exc:
        load_master_key(path)
    message = str(exc.value)
    assert message == (
        f"{path}: the master key is not hexadecimal; only the digits 0-9 and a-f are allowed"
    )
    assert FIXED_MASTER.hex()[:16] not in message


# Derivation


def test_project_key_is_hkdf_sha256_of_the_master_bound_to_the_project() -> None:
    project = derive_project_key(MasterKey(FIXED_MASTER), "gbm-2026")
    expected = hkdf_sha256(
        FIXED_MASTER, b"jupyter-tre/hkdf-salt/v1", b"jupyter-tre/project-key/v1/gbm-2026"
    )
    assert project._key == expected
    assert project.project_id == "gbm-2026"
    assert project.master_key_id == MasterKey(FIXED_MASTER).key_id


def test_sub_keys_are_hkdf_expand_of_the_project_key_one_per_purpose() -> None:
    project = derive_project_key(MasterKey(FIXED_MASTER), "gbm-2026")
    for purpose in KeyPurpose:
        info = b"jupyter-tre/sub-key/v1/" + purpose.value.encode()
        expected = hmac.new(project._key, info + b"\x01", hashlib.sha256).digest()
        assert project.subkey(purpose) == expected
    keys = {project.subkey(p) for p in KeyPurpose} | {project._key}
    assert len(keys) == len(KeyPurpose) + 1, "every purpose has its own key"


def test_known_answers_stay_fixed_across_releases() -> None:
    # Changing any label or the derivation silently changes every pseudonym a site has
    # made: this test must fail first.
    master = MasterKey(FIXED_MASTER)
    project = derive_project_key(master, "gbm-2026")
    assert master.key_id == "9e02dd7e2d6bd9a6"
    assert project.key_id == "4d82fc21e0bea442"


def test_derivation_is_deterministic_across_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    created = create_master_key(path)
    first = derive_project_key(load_master_key(path), "p1")
    second = derive_project_key(load_master_key(path), "p1")
    assert first._key == second._key
    assert all(first.subkey(p) == second.subkey(p) for p in KeyPurpose)
    assert first.master_key_id == created.key_id


def test_projects_and_masters_give_independent_keys() -> None:
    a = MasterKey(FIXED_MASTER)
    b = MasterKey(bytes(31) + b"\x01")
    keys = {
        derive_project_key(a, "p1")._key,
        derive_project_key(a, "p2")._key,
        derive_project_key(a, "p10")._key,
        derive_project_key(b, "p1")._key,
    }
    assert len(keys) == 4


@pytest.mark.parametrize("project_id", ["", " p1", "p1\n", "\t"])
def test_project_ids_must_be_exact(project_id: str) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string without surrounding"):
        derive_project_key(MasterKey(FIXED_MASTER), project_id)


def test_key_id_is_16_hex_digits_and_not_part_of_the_key() -> None:
    ident = key_id(FIXED_MASTER)
    assert len(ident) == 16 and int(ident, 16) >= 0
    assert ident not in FIXED_MASTER.hex()
    assert ident == hashlib.sha256(b"jupyter-tre/key-id/v1\x00" + FIXED_MASTER).hexdigest()[:16]


def test_master_key_rejects_wrong_lengths_without_showing_bytes() -> None:
    with pytest.raises(ValueError) as exc:
        MasterKey(FIXED_MASTER[:31])
    assert str(exc.value) == "a key must be 32 bytes"


# Keys never show themselves


@pytest.mark.security
def test_repr_and_str_never_show_key_bytes() -> None:
    master = MasterKey(FIXED_MASTER)
    project = derive_project_key(master, "gbm-2026")
    secrets_ = [FIXED_MASTER, project._key, *(project.subkey(p) for p in KeyPurpose)]
    for obj in (master, project):
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}"):
            for secret in secrets_:
                assert secret.hex() not in text.lower()
                assert repr(secret)[2:-1] not in text
    assert repr(project) == "ProjectKey(project_id='gbm-2026', key_id='4d82fc21e0bea442')"
    assert repr(master) == "MasterKey(key_id='9e02dd7e2d6bd9a6')"


@pytest.mark.security
def test_keys_cannot_be_pickled_or_inspected_with_vars() -> None:
    project = derive_project_key(MasterKey(FIXED_MASTER), "gbm-2026")
    for obj in (MasterKey(FIXED_MASTER), project):
        with pytest.raises(TypeError, match="cannot be pickled: keys stay on the ingest host"):
            pickle.dumps(obj)
        with pytest.raises(TypeError):
            vars(obj)


def test_project_key_can_be_built_from_raw_bytes() -> None:
    project = ProjectKey("p1", bytes(32))
    assert project.master_key_id is None
    assert project.key_id == key_id(bytes(32))
