"""Staging and sealing of one dataset version: nothing is visible until it is complete.

A version is built in a staging folder under `var/.staging/` and renamed into
place as the last step, so an interrupted ingest leaves no version (and the
staging folder is removed). A sealed version is read-only and never replaced.
A run holds a lock on its staging folder while it lives; a folder nobody holds
was left by a run that was killed, and the next run removes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import IngestError
from .manifest import RECORD_NAME, FileEntry

log = logging.getLogger("tre.ingest")

STAGING_DIR = ".staging"
LOCK_NAME = ".lock"
"""Held (flock) by the run that owns a staging folder, for as long as it runs."""

READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
READ_ONLY_DIR = READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(frozen=True)
class VersionPaths:
    """Where a version's parts go, all under the settings' `var_dir`."""

    var_dir: Path
    relative: str
    """The version's folder relative to the datasets folder, e.g. 'proj/dataset/1'."""

    @property
    def version_dir(self) -> Path:
        return self.var_dir / "datasets" / self.relative

    @property
    def quarantine_dir(self) -> Path:
        return self.var_dir / "quarantine" / self.relative

    @property
    def record_path(self) -> Path:
        return self.var_dir / "ingest" / self.relative / RECORD_NAME


class StagedVersion:
    """A context manager that stages a version and removes the staging on any failure."""

    def __init__(self, paths: VersionPaths) -> None:
        self.paths = paths
        self._root = paths.var_dir / STAGING_DIR
        self._staging = self._root / uuid.uuid4().hex
        self.out_dir = self._staging / "version"
        self.quarantine_dir = self._staging / "quarantine"
        self._lock: int | None = None

    def __enter__(self) -> StagedVersion:
        if self.paths.version_dir.exists():
            raise IngestError(
                f"{self.paths.version_dir}: this dataset version already exists; versions are "
                "immutable, so register a new version in the policy to ingest again"
            )
        self._root.mkdir(parents=True, exist_ok=True)
        with _locked(self._root):  # no run is between creating its folder and locking it
            remove_abandoned(self._root)
            self.out_dir.mkdir(parents=True)
            self.quarantine_dir.mkdir()
            self._lock = os.open(self._staging / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._staging.exists():
                _make_writable(self._staging)
                shutil.rmtree(self._staging)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def files(self) -> list[FileEntry]:
        """Every staged output file with its checksum, in a stable order."""
        entries = []
        for path in sorted(p for p in self.out_dir.rglob("*") if p.is_file()):
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            entries.append(
                FileEntry(
                    path=path.relative_to(self.out_dir).as_posix(),
                    sha256=digest.hexdigest(),
                    size=path.stat().st_size,
                )
            )
        return entries

    def seal(self, manifest: bytes, manifest_name: str, record: bytes) -> None:
        """Write the manifest, make the version read-only and move everything into place."""
        (self.out_dir / manifest_name).write_bytes(manifest)
        _make_read_only(self.out_dir)
        if self.paths.quarantine_dir.exists():  # left by an earlier run that never sealed
            _make_writable(self.paths.quarantine_dir)
            shutil.rmtree(self.paths.quarantine_dir)
        if any(self.quarantine_dir.iterdir()):
            self.paths.quarantine_dir.parent.mkdir(parents=True, exist_ok=True)
            self.quarantine_dir.replace(self.paths.quarantine_dir)
        record_path = self.paths.record_path
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_bytes(record)
        tmp.chmod(0o600)
        tmp.replace(record_path)
        self.paths.version_dir.parent.mkdir(parents=True, exist_ok=True)
        self.out_dir.rename(self.paths.version_dir)  # the commit point
        _fsync_dir(self.paths.version_dir.parent)


def remove_abandoned(root: Path) -> list[str]:
    """Remove the staging folders under `root` that no live run holds (left by runs that
    were killed); return their names. Call with `root` locked."""
    removed = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            fd = None  # a run makes its folder and its lock under the root's lock: none lives
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a run that is still writing
            _make_writable(folder)
            shutil.rmtree(folder)
            removed.append(folder.name)
        finally:
            if fd is not None:
                os.close(fd)
    if removed:
        log.warning("removed %d staging folder(s) left by killed ingest runs", len(removed))
    return removed


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(READ_ONLY_DIR if path.is_dir() else READ_ONLY_FILE)
    root.chmod(READ_ONLY_DIR)


def _make_writable(root: Path) -> None:
    root.chmod(0o700)
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
