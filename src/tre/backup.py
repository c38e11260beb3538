"""Backups of a site's hub-side state, and their restore into an empty `var/`.

A backup is one `.tar` file holding, under `var/`:

- every SQLite database in `db/` (hub, audit, review), each copied with SQLite's online
  backup API, so a database in use is copied consistently;
- the audit log's JSON-lines files (`logs/audit/`), the review service's copies of
  submitted and released outputs (`releases/`), project states (`projects/`), project
  resources (`resources/`) and workspaces (`workspaces/`);
- `MANIFEST.json`: every file with its size and SHA-256.

Not in it, on purpose: the pseudonym keys and the source silos (they live on the ingest
host and have their own custody), the pseudonymised datasets (ingest makes them again from
the silos, and the policy pins their manifests), the package mirror's cache and the
published folder (both are rebuilt). PostgreSQL databases are backed up with the
database's own tools (`pg_dump`); this refuses to run for a site that uses them rather
than write a backup that lacks them.

Restore checks every file against the manifest before anything is written, and writes
only into a `var/` that holds none of these folders yet (nothing is overwritten).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

from tre.settings import Settings

FOLDERS = ("logs/audit", "releases", "projects", "resources", "workspaces")
"""Folders under var/ copied as they are (besides the databases)."""
MANIFEST = "MANIFEST.json"
ROOT = "var"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore cannot be done as asked; nothing was written."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    files: int
    bytes: int


def check_backup_possible(settings: Settings) -> None:
    """Refuse sites whose databases are not SQLite files under db/ (use pg_dump there)."""
    for name, url in (
        ("hub.db_url", settings.hub.db_url),
        ("audit.db_url", settings.audit.db_url),
        ("review.db_url", settings.review.db_url),
    ):
        if url is not None and not url.startswith("sqlite"):
            raise BackupError(
                f"{name} is not SQLite: back that database up with its own tools (pg_dump); "
                "this backup would lack it"
            )


def create_backup(settings: Settings, dest_dir: Path, now: datetime | None = None) -> BackupResult:
    """Write `tre-backup-<UTC time>.tar` into `dest_dir`; return what it holds."""
    check_backup_possible(settings)
    now = now or datetime.now(UTC)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"tre-backup-{now:%Y%m%dT%H%M%SZ}.tar"
    if target.exists():
        raise BackupError(f"{target} exists already")
    manifest: dict[str, dict[str, object]] = {}
    total = 0
    partial = target.with_suffix(".tar.partial")
    with tempfile.TemporaryDirectory() as work, tarfile.open(partial, "w") as tar:
        for db in sorted(settings.db_dir.glob("*.sqlite")):
            copy = Path(work) / db.name
            _sqlite_copy(db, copy)
            total += _add(tar, copy, f"db/{db.name}", manifest)
        for folder in FOLDERS:
            base = settings.var_dir / folder
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    total += _add(
                        tar, path, path.relative_to(settings.var_dir).as_posix(), manifest
                    )
        data = json.dumps(
            {"created": now.isoformat(), "files": manifest}, indent=2, sort_keys=True
        ).encode()
        info = tarfile.TarInfo(f"{ROOT}/{MANIFEST}")
        info.size, info.mode, info.mtime = len(data), 0o600, int(now.timestamp())
        tar.addfile(info, io.BytesIO(data))
    partial.chmod(0o600)
    partial.replace(target)
    return BackupResult(target, len(manifest), total)


def restore_backup(archive: Path, settings: Settings) -> BackupResult:
    """Unpack `archive` into settings.var_dir, after checking every file against the
    manifest; refuses a var/ that already holds any of the backed-up folders."""
    present = [f for f in ("db", *FOLDERS) if (settings.var_dir / f).exists()]
    if present:
        raise BackupError(
            f"{settings.var_dir} already holds {', '.join(present)}: restore into an empty "
            "var/ (nothing is overwritten)"
        )
    try:
        tar = tarfile.open(archive, "r")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive}: not a readable backup: {exc}") from exc
    with tar:
        checked = _checked_members(tar, archive)  # every file, before anything is written
        total = 0
        for rel, member in checked.items():
            path = settings.var_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            source = tar.extractfile(member)
            assert source is not None  # checked above
            with path.open("xb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            path.chmod(0o600 if rel.startswith("db/") else 0o640)
            total += member.size
    return BackupResult(archive, len(checked), total)


def _checked_members(tar: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    members = {m.name: m for m in tar.getmembers()}
    try:
        raw = tar.extractfile(members[f"{ROOT}/{MANIFEST}"])
        manifest = json.loads(raw.read() if raw else b"")["files"]
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupError(f"{archive}: no readable {MANIFEST}: not a jupyter-tre backup") from exc
    contents: dict[str, tarfile.TarInfo] = {}
    for rel, entry in manifest.items():
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or ".." in parts or not parts:
            raise BackupError(f"{archive}: {rel!r} would land outside var/")
        member = members.get(f"{ROOT}/{rel}")
        handle = tar.extractfile(member) if member is not None and member.isfile() else None
        if handle is None:
            raise BackupError(f"{archive}: {rel} is in the manifest but not in the archive")
        if _hash(handle) != (entry["size"], entry["sha256"]):
            raise BackupError(
                f"{archive}: {rel} does not match its checksum: the backup is damaged"
            )
        assert member is not None
        contents[rel] = member
    extra = sorted(set(members) - {f"{ROOT}/{r}" for r in manifest} - {f"{ROOT}/{MANIFEST}"})
    if extra:
        raise BackupError(f"{archive}: {extra[0]} is not in the manifest")
    return contents


def _sqlite_copy(source: Path, dest: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _add(tar: tarfile.TarFile, path: Path, rel: str, manifest: dict[str, dict[str, object]]) -> int:
    """Stream `path` into the archive; its size and hash into the manifest."""
    with path.open("rb") as handle:
        size, digest = _hash(handle)
        handle.seek(0)
        info = tarfile.TarInfo(f"{ROOT}/{rel}")
        info.size, info.mode, info.mtime = size, 0o600, int(path.stat().st_mtime)
        tar.addfile(info, handle)
    manifest[rel] = {"size": size, "sha256": digest}
    return size


def _hash(handle: IO[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
