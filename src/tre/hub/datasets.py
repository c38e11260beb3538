"""Checks that a dataset version folder is exactly what ingest sealed, before it is mounted.

A folder is mounted only if its MANIFEST.json matches the checksum the policy
pins (when it pins one) and every file the manifest lists is present with its
checksum and nothing else is there. Full hashing is cached per file identity
(device, inode, size, modification time), so a sealed version is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import DatasetMount, SpawnPlan, SpawnRefused

MANIFEST_NAME = "MANIFEST.json"


class DatasetUnavailable(Exception):
    """A dataset version cannot be mounted; the message names it and says why."""


@dataclass
class VerificationCache:
    """Checksums of files already verified, keyed by their on-disk identity."""

    path: Path

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


def check_dataset(mount: DatasetMount, cache: VerificationCache | None = None) -> None:
    """Raise `DatasetUnavailable` unless the folder matches its sealed manifest."""
    name = f"dataset '{mount.dataset}' version '{mount.version}'"
    folder = mount.source
    if not folder.is_dir():
        raise DatasetUnavailable(f"{name}: {folder} is missing; has it been ingested?")
    manifest_path = folder / MANIFEST_NAME
    try:
        manifest_bytes = manifest_path.read_bytes()
        manifest = json.loads(manifest_bytes)
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetUnavailable(f"{name}: {manifest_path} is missing or unreadable") from exc
    if mount.manifest_sha256 is not None:
        actual = hashlib.sha256(manifest_bytes).hexdigest()
        if actual != mount.manifest_sha256:
            raise DatasetUnavailable(
                f"{name}: {manifest_path} has checksum {actual[:16]}…, but the policy pins "
                f"{mount.manifest_sha256[:16]}…"
            )
    present = {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p != manifest_path
    }
    extra = sorted(set(present) - set(listed))
    missing = sorted(set(listed) - set(present))
    if extra or missing:
        what = f"{len(missing)} missing, {len(extra)} not in the manifest"
        example = (missing or extra)[0]
        raise DatasetUnavailable(
            f"{name}: {folder} does not match its manifest ({what}, e.g. '{example}')"
        )
    known = cache.load() if cache else {}
    updated = dict(known)
    for relative, path in sorted(present.items()):
        if path.is_symlink():
            raise DatasetUnavailable(f"{name}: '{relative}' is a symbolic link")
        key = _identity(path)
        digest = known.get(key) or _sha256(path)
        if digest != listed[relative]:
            raise DatasetUnavailable(
                f"{name}: '{relative}' does not match the checksum in its manifest"
            )
        updated[key] = digest
    if cache and updated != known:
        cache.save(updated)


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{os.fspath(path)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_plan_datasets(plan: SpawnPlan, settings_hub_dir: Path, log: Any) -> None:
    """Every dataset of a spawn plan as sealed, or `SpawnRefused` (the detail goes to the
    hub's log for the administrator, not to the researcher)."""
    cache = VerificationCache(settings_hub_dir / "verified-files.json")
    for mount in plan.datasets:
        try:
            check_dataset(mount, cache)
        except DatasetUnavailable as exc:
            log.error("refusing spawn for %s: %s", plan.username, exc)
            raise SpawnRefused(
                f"dataset '{mount.dataset}' is not available right now; the data manager "
                "has been told"
            ) from exc
