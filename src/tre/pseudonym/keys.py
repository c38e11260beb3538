"""Key custody: one random site master key in an owner-only file that is never overwritten,
and per-project keys derived from it; key bytes never appear in a repr, a message or a
manifest, which carry only key ids.

Each project key is HKDF-SHA256(master, info="jupyter-tre/project-key/v1/" + project id),
and each purpose (pseudonyms, date shifts, DICOM UIDs) gets its own sub-key expanded from
the project key under its own label, so output made for one purpose says nothing about
another and outputs of two projects cannot be linked without the master key.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .private_files import (
    PRIVATE_FILE_MODE,
    fsync_dir,
    private_dir_problem,
    private_file_problem,
)

KEY_BYTES = 32
"""Length of the master key and of every derived key (256 bits)."""

MASTER_KEY_FILE_NAME = "master.key"
"""The master key's file name inside `Settings.keys_dir`."""

_KEY_ID_LABEL = b"jupyter-tre/key-id/v1\x00"
_HKDF_SALT = b"jupyter-tre/hkdf-salt/v1"
_PROJECT_INFO = b"jupyter-tre/project-key/v1/"
_SUBKEY_INFO = b"jupyter-tre/sub-key/v1/"
_KEY_TEXT = re.compile(rb"[0-9a-fA-F]{64}")
_MAX_KEY_FILE_BYTES = 4096


class KeyCustodyError(Exception):
    """A key file is missing, exposed or malformed, or would be overwritten.

    The message names the path and the problem, and never contains key material.
    """


class KeyPurpose(StrEnum):
    """What a project sub-key is for; each purpose has its own key."""

    pseudonym = "pseudonym"
    date_shift = "date-shift"
    dicom_uid = "dicom-uid"


def key_id(key: bytes) -> str:
    """A public name for `key`: 16 hex digits of SHA-256 over a fixed label and the key.

    Safe to write to manifests and logs: finding the key from it means inverting SHA-256.
    """
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:16]


class _Secret:
    """Holds key bytes and refuses to show or pickle them."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"a key must be {KEY_BYTES} bytes")
        self._key = key
        self.key_id = key_id(key)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # Pickling is how objects travel to other processes and files; keys stay here.
        raise TypeError(f"{type(self).__name__} cannot be pickled: keys stay on the ingest host")


class MasterKey(_Secret):
    """The site master key. Only `derive_project_key` reads its bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    __str__ = __repr__


class ProjectKey(_Secret):
    """One project's key and its per-purpose sub-keys.

    `project_id`, `key_id` and `master_key_id` may go into manifests; the key bytes and
    sub-keys may not, and `repr`/`str` never show them.
    """

    __slots__ = ("_subkeys", "master_key_id", "project_id")

    def __init__(self, project_id: str, key: bytes, *, master_key_id: str | None = None) -> None:
        super().__init__(key)
        _check_project_id(project_id)
        self.project_id = project_id
        self.master_key_id = master_key_id
        self._subkeys = {
            purpose: HKDFExpand(
                algorithm=hashes.SHA256(),
                length=KEY_BYTES,
                info=_SUBKEY_INFO + purpose.value.encode("ascii"),
            ).derive(key)
            for purpose in KeyPurpose
        }

    def subkey(self, purpose: KeyPurpose) -> bytes:
        """The key for one purpose; hand it only to the code that serves that purpose."""
        return self._subkeys[purpose]

    def __repr__(self) -> str:
        return f"ProjectKey(project_id={self.project_id!r}, key_id={self.key_id!r})"

    __str__ = __repr__


def derive_project_key(master: MasterKey, project_id: str) -> ProjectKey:
    """The project's key: HKDF-SHA256 of the master key, bound to `project_id`.

    The same master key and project id give the same key on every run; different
    project ids give independent keys.
    """
    _check_project_id(project_id)
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=_HKDF_SALT,
        info=_PROJECT_INFO + project_id.encode("utf-8"),
    ).derive(master._key)
    return ProjectKey(project_id, key, master_key_id=master.key_id)


def default_master_key_path(keys_dir: Path) -> Path:
    """Where the site keeps its master key: `keys_dir / "master.key"`."""
    return keys_dir / MASTER_KEY_FILE_NAME


def create_master_key(path: Path) -> MasterKey:
    """Create a new random master key at `path` (mode 0600, directory mode 0700).

    The key is written under a temporary name, synced, then published without ever
    replacing an existing file: an existing key is never overwritten, because every
    pseudonym made with it would silently change.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        _refuse_overwrite(path)
    try:
        problem = private_dir_problem(path.parent, "key")
    except OSError as exc:
        raise KeyCustodyError(
            f"{path.parent}: cannot create the key directory: {exc.strerror}"
        ) from exc
    if problem:
        raise KeyCustodyError(problem)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise KeyCustodyError(f"{path}: cannot create the master key: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            _write_all(fd, key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish_without_overwriting(tmp, path)
    except OSError as exc:
        raise KeyCustodyError(f"{path}: cannot create the master key: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return MasterKey(key)


def load_master_key(path: Path) -> MasterKey:
    """Read the master key, failing closed unless `path` is a private, well-formed key file.

    Refused: a missing file, a symbolic link or anything but a regular file, a file
    group or others can read or write (0600 is required), and content that is not
    64 hexadecimal digits (one trailing newline allowed).
    """
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise KeyCustodyError(f"{path}: the master key file does not exist") from None
    except OSError as exc:
        raise KeyCustodyError(f"{path}: cannot read the master key file: {exc.strerror}") from exc
    problem = private_file_problem(st, path, "master key file")
    if problem:
        raise KeyCustodyError(problem)
    try:
        # O_NOFOLLOW and the inode check close the gap between lstat and open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyCustodyError(f"{path}: cannot open the master key file: {exc.strerror}") from exc
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise KeyCustodyError(f"{path}: the master key file changed while it was being opened")
        problem = private_file_problem(opened, path, "master key file")
        if problem:
            raise KeyCustodyError(problem)
        data = _read_at_most(fd, _MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    return MasterKey(_parse_key_text(data, path))


def _parse_key_text(data: bytes, path: Path) -> bytes:
    # Messages count characters but never quote them: the content may be a key.
    if not data:
        raise KeyCustodyError(
            f"{path}: the master key file is empty; expected {2 * KEY_BYTES} hexadecimal digits"
        )
    text = data.removesuffix(b"\n")
    if len(text) != 2 * KEY_BYTES:
        shown = f"more than {_MAX_KEY_FILE_BYTES}" if len(data) > _MAX_KEY_FILE_BYTES else len(text)
        raise KeyCustodyError(
            f"{path}: the master key must be {2 * KEY_BYTES} hexadecimal digits "
            f"({KEY_BYTES} bytes), found {shown} characters"
        )
    if not _KEY_TEXT.fullmatch(text):
        raise KeyCustodyError(
            f"{path}: the master key is not hexadecimal; only the digits 0-9 and a-f are allowed"
        )
    return bytes.fromhex(text.decode("ascii"))


def _check_project_id(project_id: str) -> None:
    if not isinstance(project_id, str) or not project_id or project_id != project_id.strip():
        raise ValueError(
            f"project id {project_id!r} is not allowed: it must be a non-empty string "
            "without surrounding white space"
        )


def _refuse_overwrite(path: Path) -> NoReturn:
    raise KeyCustodyError(
        f"{path}: a master key already exists; refusing to overwrite it "
        "(every pseudonym made with it depends on it)"
    )


def _publish_without_overwriting(tmp: Path, path: Path) -> None:
    # A hard link fails if `path` exists, so two concurrent creations cannot both
    # succeed; os.replace alone would let the second silently replace the first.
    try:
        os.link(tmp, path)
    except FileExistsError:
        _refuse_overwrite(path)
    except OSError as exc:
        if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}:
            raise
        # File systems without hard links: check, then rename (a small race remains).
        if path.exists() or path.is_symlink():
            _refuse_overwrite(path)
        tmp.replace(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
