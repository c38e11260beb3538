"""Project resources: large reference files (genomes, models) an administrator copies into a
read-only folder per project, `var/resources/<project>/<name>/`, with a manifest.

A resource is immutable: it appears whole (staged beside its target, hashes verified, then
renamed into place) or not at all, its files are 0444 and folders 0555, and a name is
never reused. Every addition is in the project's audit chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .audit import AuditEvent, AuditStore, EventKind, open_store
from .policy import Policy
from .settings import Settings

MANIFEST_NAME = "MANIFEST.json"
FILE_MODE = 0o444
DIR_MODE = 0o555
PROJECT_DIR_MODE = 0o755
"""The project's folder stays writable by the administrator so new resources can be added;
workspaces mount it read-only."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A resource name: letters, digits, '.', '_' and '-', not starting with a dot (staging
folders do), at most 128 characters."""
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

CHUNK = 1 << 20

ProgressFn = Callable[[str, int, int], None]
"""progress(relative path just copied, bytes copied so far, total bytes)."""


class ResourceError(Exception):
    """A resource cannot be added or read; the message names the input and what was wrong."""


class ResourceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Path relative to the resource folder, '/'-separated.")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ResourceManifest(BaseModel):
    """MANIFEST.json of one resource."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    project: str
    added_by: str
    added_at: datetime
    note: str | None = None
    source: str = Field(description="The absolute path the files were copied from.")
    total_bytes: int = Field(ge=0)
    files: tuple[ResourceFile, ...]


@dataclass(frozen=True)
class SourceFile:
    relative: str
    path: Path
    size: int


@dataclass(frozen=True)
class SourceTree:
    """What a source holds, found without following any link."""

    root: Path
    is_dir: bool
    dirs: tuple[str, ...]
    files: tuple[SourceFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class AddedResource:
    path: Path
    manifest: ResourceManifest
    manifest_sha256: str


@dataclass(frozen=True)
class ResourceSummary:
    project: str
    name: str
    path: Path
    manifest: ResourceManifest

    @property
    def files(self) -> int:
        return len(self.manifest.files)


# -- paths -------------------------------------------------------------------------------


def resources_dir(settings: Settings) -> Path:
    """Every project's resources; `<project>/` below it is what a workspace mounts."""
    return settings.var_dir / "resources"


def project_resources_dir(settings: Settings, project: str) -> Path:
    check_project_name(project)
    return resources_dir(settings) / project


# -- rules -------------------------------------------------------------------------------


def can_name_resource(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def check_resource_name(name: str) -> None:
    if not can_name_resource(name):
        raise ResourceError(
            f"resource name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters (--name sets it)"
        )


def check_project_name(project: str) -> None:
    if PROJECT_PATTERN.fullmatch(project) is None:
        raise ResourceError(f"project {project!r} is not a project id (lower case, digits, '-')")


def can_add_to_project(policy: Policy, project: str) -> bool:
    return policy.project(project) is not None


def check_project(policy: Policy, project: str) -> None:
    if not can_add_to_project(policy, project):
        known = ", ".join(p.id for p in policy.projects) or "none"
        raise ResourceError(f"unknown project {project!r}; the policy's projects: {known}")


def can_use_name(target: Path) -> bool:
    return not os.path.lexists(target)


def check_name_free(target: Path, project: str) -> None:
    if not can_use_name(target):
        raise ResourceError(
            f"resource {target.name!r} of project {project!r} exists already ({target}); "
            "resources are immutable: add the new files under a new --name"
        )


def check_source_outside(source: Path, var_dir: Path) -> None:
    """The source may neither be inside var/ (datasets, keys, other resources) nor hold it."""
    src, var = source.resolve(), var_dir.resolve()
    if src == var or src.is_relative_to(var):
        raise ResourceError(
            f"source {source} is inside the TRE's var folder {var_dir}; resources come from "
            "outside it (copy from where the files were delivered)"
        )
    if var.is_relative_to(src):
        raise ResourceError(f"source {source} contains the TRE's var folder {var_dir}")


def can_fit(needed: int, free: int) -> bool:
    return needed <= free


def check_space(needed: int, where: Path) -> None:
    free = shutil.disk_usage(_existing_ancestor(where)).free
    if not can_fit(needed, free):
        raise ResourceError(
            f"not enough space for the resource: it needs {needed} bytes, "
            f"{where} has {free} bytes free"
        )


def default_actor(env: Mapping[str, str] | None = None) -> str | None:
    """Who is adding: the administrator behind sudo, else the login user."""
    env = os.environ if env is None else env
    return env.get("SUDO_USER") or env.get("USER") or None


# -- scanning ----------------------------------------------------------------------------


def scan_source(source: Path) -> SourceTree:
    """List a file or folder's contents; refuse links and special files anywhere in it."""
    st = _lstat(source, source)
    if stat.S_ISREG(st.st_mode):
        return SourceTree(source, False, (), (SourceFile(source.name, source, st.st_size),))
    if not stat.S_ISDIR(st.st_mode):
        _refuse_kind(st.st_mode, source)
    dirs: list[str] = []
    files: list[SourceFile] = []
    for rel, path, mode, size in _walk(source, ""):
        if stat.S_ISDIR(mode):
            dirs.append(rel)
        else:
            files.append(SourceFile(rel, path, size))
    if any(f.relative == MANIFEST_NAME for f in files):
        raise ResourceError(
            f"source {source} holds a top-level {MANIFEST_NAME}, the name of the manifest "
            "the TRE writes; rename it"
        )
    return SourceTree(source, True, tuple(dirs), tuple(files))


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, Path, int, int]]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise ResourceError(f"source folder {root}: cannot list: {exc.strerror}") from exc
    for entry in entries:
        path = Path(entry.path)
        rel = f"{prefix}{entry.name}"
        st = _lstat(path, path)
        if stat.S_ISDIR(st.st_mode):
            yield rel, path, st.st_mode, 0
            yield from _walk(path, rel + "/")
        elif stat.S_ISREG(st.st_mode):
            yield rel, path, st.st_mode, st.st_size
        else:
            _refuse_kind(st.st_mode, path)


def _lstat(path: Path, named: Path) -> os.stat_result:
    try:
        return path.lstat()
    except FileNotFoundError as exc:
        raise ResourceError(f"source {named} does not exist") from exc
    except OSError as exc:
        raise ResourceError(f"source {named}: cannot read: {exc.strerror}") from exc


def _refuse_kind(mode: int, named: Path) -> NoReturn:
    if stat.S_ISLNK(mode):
        raise ResourceError(
            f"source {named} is a symbolic link; links are not followed: copy the files "
            "themselves into the source"
        )
    kind = next((k for test, k in _SPECIAL_KINDS if test(mode)), "a special file")
    raise ResourceError(f"source {named} is {kind}; only regular files and folders can be added")


_SPECIAL_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


# -- adding ------------------------------------------------------------------------------


def add_resource(
    settings: Settings,
    policy: Policy,
    project: str,
    source: Path,
    *,
    by: str,
    name: str | None = None,
    note: str | None = None,
    store: AuditStore | None = None,
    progress: ProgressFn | None = None,
    now: datetime | None = None,
) -> AddedResource:
    """Copy `source` into the project's resources as `name`, read-only, with a manifest and
    an audit record; raise `ResourceError` saying why not, leaving nothing behind."""
    check_project(policy, project)
    name = source.name if name is None else name
    check_resource_name(name)
    if not by.strip():
        raise ResourceError("who is adding the resource is unknown: pass --by")
    source = source.absolute()
    check_source_outside(source, settings.var_dir)
    tree = scan_source(source)
    project_dir = project_resources_dir(settings, project)
    target = project_dir / name
    check_name_free(target, project)
    check_space(tree.total_bytes, project_dir)
    store = open_store(settings) if store is None else store
    project_dir.mkdir(parents=True, exist_ok=True, mode=PROJECT_DIR_MODE)
    with _project_lock(settings, project):
        check_name_free(target, project)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=project_dir))
        try:
            files = _copy_tree(tree, staging, progress)
            manifest = ResourceManifest(
                name=name,
                project=project,
                added_by=by,
                added_at=now or datetime.now(UTC),
                note=note,
                source=str(source),
                total_bytes=sum(f.size for f in files),
                files=files,
            )
            data = dump_manifest(manifest)
            _write_new(staging / MANIFEST_NAME, data)
            _make_read_only(staging)
            staging.rename(target)
        except BaseException:
            _remove_tree(staging)
            raise
        _fsync_dir(project_dir)
        digest = hashlib.sha256(data).hexdigest()
        try:
            store.append(
                AuditEvent(
                    kind=EventKind.resource_added,
                    actor=by,
                    project=project,
                    at=manifest.added_at,
                    detail={
                        "name": name,
                        "files": len(files),
                        "bytes": manifest.total_bytes,
                        "manifest_sha256": digest,
                    },
                )
            )
        except BaseException:
            # Fail closed: no resource is mounted that the audit log does not know of.
            _remove_tree(target)
            raise
    return AddedResource(target, manifest, digest)


def dump_manifest(manifest: ResourceManifest) -> bytes:
    payload = manifest.model_dump(mode="json")
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _copy_tree(
    tree: SourceTree, staging: Path, progress: ProgressFn | None
) -> tuple[ResourceFile, ...]:
    for rel in tree.dirs:
        (staging / rel).mkdir(mode=0o700)
    total, done = tree.total_bytes, 0
    read: list[ResourceFile] = []
    for f in tree.files:
        read.append(ResourceFile(path=f.relative, size=f.size, sha256=_copy_file(f, staging)))
        done += f.size
        if progress is not None:
            progress(f.relative, done, total)
    # Check what landed on disk against what was read from the source, before anyone sees it.
    for entry in read:
        copied = _sha256_of(staging / entry.path)
        if copied != entry.sha256:
            raise ResourceError(
                f"copy of {entry.path} does not match the source (sha256 {copied} on disk, "
                f"{entry.sha256} read); nothing was added"
            )
    return tuple(read)


def _copy_file(f: SourceFile, staging: Path) -> str:
    """Copy one file, hashing the bytes as read; refuse a source that changed since the scan."""
    digest = hashlib.sha256()
    copied = 0
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ResourceError(f"source {f.path}: cannot open: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise ResourceError(f"source {f.path} is no longer a regular file")
        out_fd = os.open(staging / f.relative, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(out_fd, "wb") as dst:
            try:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    copied += len(chunk)
            except OSError as exc:
                raise ResourceError(f"source {f.path}: read failed: {exc.strerror}") from exc
            dst.flush()
            os.fsync(dst.fileno())
    if copied != f.size:
        raise ResourceError(
            f"source {f.path} changed while it was copied ({f.size} bytes listed, {copied} read)"
        )
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _make_read_only(root: Path) -> None:
    # Only what _copy_tree created is here: no links to follow.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for filename in filenames:
            (Path(dirpath) / filename).chmod(FILE_MODE)
        for dirname in dirnames:
            (Path(dirpath) / dirname).chmod(DIR_MODE)
    root.chmod(DIR_MODE)
    _fsync_dir(root)


def _remove_tree(root: Path) -> None:
    if not root.exists():
        return
    for dirpath, _, _ in os.walk(root):
        Path(dirpath).chmod(0o700)
    shutil.rmtree(root)


@contextmanager
def _project_lock(settings: Settings, project: str) -> Iterator[None]:
    # Beside the project folders, not in them: workspaces mount <project>/.
    lock = resources_dir(settings) / f".{project}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


# -- listing -----------------------------------------------------------------------------


def read_manifest(folder: Path) -> ResourceManifest:
    path = folder / MANIFEST_NAME
    try:
        return ResourceManifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ResourceError(f"{path}: cannot read the manifest: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ResourceError(f"{path}: not a valid resource manifest: {exc}") from exc


def list_resources(settings: Settings, project: str | None = None) -> list[ResourceSummary]:
    """Every resource (or one project's), by project then name, from the manifests."""
    root = resources_dir(settings)
    if project is not None:
        projects = [project_resources_dir(settings, project)]
    elif root.is_dir():
        projects = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        projects = []
    found: list[ResourceSummary] = []
    for project_dir in projects:
        if not project_dir.is_dir():
            continue
        for folder in sorted(project_dir.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            found.append(
                ResourceSummary(project_dir.name, folder.name, folder, read_manifest(folder))
            )
    return found
