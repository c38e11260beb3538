"""The review service's own copies of submitted files: written once, never changed.

A copy lives at `<releases_dir>/<project>/<request-id>/<version>/<name>`, is written
under a temporary name, synced, made read-only (0444) and linked into place (which
fails rather than replace an existing copy). Its SHA-256 is recorded in the database
and checked again every time the copy is read; a mismatch is an error naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ReviewError

_CHUNK = 1 << 20
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StoreError(ReviewError):
    """The file store cannot do what was asked; the message names the file."""


class TamperedFile(StoreError):
    """A stored copy no longer matches the checksum recorded when it was written."""


class FileTooLarge(StoreError):
    """A file grew past the size limit while it was being copied."""


@dataclass(frozen=True)
class StoredCopy:
    path: Path
    sha256: str
    size: int


class FileStore:
    """Immutable copies of request files under `root` (the settings' releases_dir)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, project: str, request_id: str, version: int, name: str) -> Path:
        for what, value in (("project", project), ("request id", request_id)):
            if not _SAFE_COMPONENT.match(value):
                raise StoreError(f"{what} {value!r} cannot name a folder of the store")
        check_file_name(name)
        return self.root / project / request_id / str(version) / name

    @contextmanager
    def locked(self, project: str, request_id: str) -> Iterator[None]:
        """Hold the request's lock file, so two copies of one file never race for a version."""
        folder = self.path_for(project, request_id, 1, "x").parent.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(self, target: Path, source_fd: int, *, max_bytes: int) -> StoredCopy:
        """Copy everything readable from `source_fd` to `target`, which must not exist yet."""
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
        digest = hashlib.sha256()
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                while chunk := os.read(source_fd, _CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileTooLarge(
                            f"{target.name}: grew past the limit of {max_bytes} bytes while "
                            "it was copied"
                        )
                    digest.update(chunk)
                    _write_all(fd, chunk)
                os.fsync(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise StoreError(f"{target}: a stored copy already exists; never replaced") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _sync_dir(target.parent)
        return StoredCopy(path=target, sha256=digest.hexdigest(), size=size)

    def discard_unrecorded(self, target: Path) -> None:
        """Remove a copy left by an attempt that crashed before the database recorded it.

        Only the service calls this, holding the request's lock, for a path it has just
        found missing from the database.
        """
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        with contextlib.suppress(OSError):  # still holds other files: keep it
            target.parent.rmdir()

    def verify(self, path: Path, sha256: str) -> None:
        """Raise `TamperedFile` unless the copy at `path` still has checksum `sha256`."""
        self.read(path, sha256, keep=False)

    def read(self, path: Path, sha256: str, *, keep: bool = True) -> bytes:
        """The content of a stored copy, after checking it against its recorded checksum."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise TamperedFile(
                f"{path.name}: the stored copy {path} cannot be read: {exc.strerror}"
            ) from exc
        digest = hashlib.sha256()
        parts: list[bytes] = []
        try:
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
                if keep:
                    parts.append(chunk)
        finally:
            os.close(fd)
        if digest.hexdigest() != sha256:
            raise TamperedFile(
                f"{path.name}: the stored copy {path} has changed since it was submitted "
                f"(sha256 {digest.hexdigest()}, recorded {sha256})"
            )
        return b"".join(parts)


def check_file_name(name: str) -> None:
    """A file name the store accepts: one path component, no NUL, not hidden."""
    if (
        not name
        or "/" in name
        or "\x00" in name
        or name in (".", "..")
        or name.startswith(".")
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        raise StoreError(f"file name {name!r} cannot be stored")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
