"""The published folder: everything the summaries service may show, and nothing else.

Layout under `settings.publish_dir`::

    current -> builds/<stamp>        the newest complete build (a relative symlink)
    builds/<stamp>/index.json        site, build time, content digest, one entry per project
    builds/<stamp>/<name>            site-wide exports (register, catalogue), when given
    builds/<stamp>/projects/<project>/summary.json
    builds/<stamp>/projects/<project>/<request id>/<file>   released copies, verified

A build is written beside the current one and made current by replacing the symlink, so
a reader sees the old build or the new one, never half of one. Every released copy is
checked against the hash recorded when it was submitted; one that fails stops the build
and the current one stays (fail closed: an altered file is never published). Builds with
the same content as the current one are not written again. Files are 0444 and folders
0555: the summaries container reads them as an unprivileged user and can change nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tre.policy import Policy
from tre.policy.permits import PermitStatus
from tre.review.filestore import FileStore, StoreError, check_file_name
from tre.review.store import ReviewStore
from tre.settings import Settings

from .released import ReleasedOutput, read_released, released_outputs, review_db_url

CURRENT = "current"
BUILDS = "builds"
INDEX = "index.json"
SUMMARY = "summary.json"
KEEP_BUILDS = 3


class PublishError(Exception):
    """The publication cannot be built; the current one stays as it is."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PublishedFile(_Frozen):
    name: str
    kind: str
    description: str
    sha256: str
    size: int
    path: str
    """Relative to the build's folder."""


class PublishedRelease(_Frozen):
    request_id: str
    title: str
    released_at: datetime
    files: tuple[PublishedFile, ...]


class DatasetUse(_Frozen):
    dataset: str
    title: str
    version: str


class PermitPeriod(_Frozen):
    id: str
    start: date
    end: date
    status: PermitStatus


class ProjectSummary(_Frozen):
    """What a project's summary page shows: the project in plain words and its releases."""

    id: str
    title: str
    lay_summary: str
    purpose: str
    purpose_label: str
    purpose_article: str
    purpose_description: str
    datasets: tuple[DatasetUse, ...]
    permits: tuple[PermitPeriod, ...]
    releases: tuple[PublishedRelease, ...]


class PublicationIndex(_Frozen):
    site: str
    built_at: datetime
    digest: str
    """SHA-256 over the build's content, build time excluded: equal digests, equal builds."""
    projects: tuple[str, ...]
    exports: tuple[str, ...]


def build_publication(
    settings: Settings,
    policy: Policy,
    *,
    today: date,
    now: datetime | None = None,
    exports: Mapping[str, bytes] | None = None,
) -> Path:
    """Make the published folder current for what is released now; return the build used.

    `exports`: site-wide files (file name -> content) such as the register and the
    catalogue, written at the build's top level.
    """
    now = now or datetime.now(UTC)
    exports = dict(exports or {})
    for name in exports:
        _check_name(name, "export")
    store = ReviewStore(review_db_url(settings))
    try:
        outputs = released_outputs(store)
    finally:
        store.close()
    files = FileStore(settings.releases_dir)
    contents: dict[str, bytes] = {}
    summaries = []
    for project in policy.projects:
        mine = [o for o in outputs if o.project == project.id]
        summary = _summary(policy, project.id, mine, today)
        for release in summary.releases:
            for f in release.files:
                output = next(
                    o for o in mine if o.request_id == release.request_id and o.name == f.name
                )
                contents[f.path] = _read(files, output)
        contents[f"projects/{project.id}/{SUMMARY}"] = _json(summary)
        summaries.append(summary)
    contents.update(exports)
    digest = _digest(contents)

    root = settings.publish_dir
    current = _current_build(root)
    if current is not None and _index_digest(current) == digest:
        return current
    index = PublicationIndex(
        site=policy.site.name,
        built_at=now,
        digest=digest,
        projects=tuple(s.id for s in summaries),
        exports=tuple(sorted(exports)),
    )
    contents[INDEX] = _json(index)
    build = _write_build(root, now, contents)
    _make_current(root, build)
    _prune(root, keep={build.name, *([current.name] if current else [])})
    return build


def current_build(settings: Settings) -> Path | None:
    """The build the summaries service shows now, if any."""
    return _current_build(settings.publish_dir)


def _summary(
    policy: Policy, project_id: str, outputs: list[ReleasedOutput], today: date
) -> ProjectSummary:
    project = policy.project(project_id)
    assert project is not None
    permits = [p for p in policy.permits if p.project == project_id]
    uses: dict[tuple[str, str], DatasetUse] = {}
    for permit in permits:
        for grant in permit.datasets:
            dataset = policy.dataset(grant.dataset)
            title = dataset.title if dataset is not None else grant.dataset
            uses[(grant.dataset, grant.version)] = DatasetUse(
                dataset=grant.dataset, title=title, version=grant.version
            )
    releases: dict[str, list[ReleasedOutput]] = {}
    for o in outputs:
        releases.setdefault(o.request_id, []).append(o)
    return ProjectSummary(
        id=project.id,
        title=project.title,
        lay_summary=project.lay_summary,
        purpose=str(project.purpose),
        purpose_label=project.purpose.label,
        purpose_article=project.purpose.article,
        purpose_description=project.purpose_description,
        datasets=tuple(uses[k] for k in sorted(uses)),
        permits=tuple(
            PermitPeriod(
                id=p.id,
                start=p.start,
                end=p.revoked.effective if p.revoked is not None else p.expiry,
                status=p.status(today),
            )
            for p in permits
        ),
        releases=tuple(
            PublishedRelease(
                request_id=request_id,
                title=items[0].request_title,
                released_at=items[0].released_at,
                files=tuple(
                    PublishedFile(
                        name=o.name,
                        kind=o.kind,
                        description=o.description,
                        sha256=o.sha256,
                        size=o.size,
                        path=_released_path(project_id, request_id, o.name),
                    )
                    for o in items
                ),
            )
            for request_id, items in releases.items()
        ),
    )


def _released_path(project: str, request_id: str, name: str) -> str:
    _check_name(request_id, "request id")
    _check_name(name, "released file name")
    return f"projects/{project}/{request_id}/{name}"


def _check_name(name: str, what: str) -> None:
    try:
        check_file_name(name)
    except StoreError as exc:
        raise PublishError(f"{what} {name!r}: {exc}") from exc


def _read(files: FileStore, output: ReleasedOutput) -> bytes:
    try:
        return read_released(files, output)
    except Exception as exc:
        raise PublishError(
            f"released file {output.name!r} of request {output.request_id} "
            f"(project {output.project}) cannot be published: {exc}. Nothing was published; "
            "the current publication stays."
        ) from exc


def _json(model: BaseModel) -> bytes:
    return (model.model_dump_json(indent=2) + "\n").encode("utf-8")


def _digest(contents: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for path in sorted(contents):
        h.update(path.encode("utf-8") + b"\0")
        h.update(hashlib.sha256(contents[path]).digest())
    return h.hexdigest()


def _current_build(root: Path) -> Path | None:
    link = root / CURRENT
    if not link.is_symlink():
        return None
    target = (root / link.readlink()).resolve()
    return target if (target / INDEX).is_file() else None


def _index_digest(build: Path) -> str | None:
    try:
        data = json.loads((build / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = data.get("digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def _write_build(root: Path, now: datetime, contents: Mapping[str, bytes]) -> Path:
    builds = root / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    for made in (root, builds):
        made.chmod(0o755)
    name = f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
    partial = builds / f".{name}.partial"
    partial.mkdir(mode=0o755)
    try:
        for rel, data in contents.items():
            path = partial / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        _set_folder_modes(partial, 0o555)
        build = builds / name
        partial.rename(build)
    except BaseException:
        _remove(partial)
        raise
    return build


def _make_current(root: Path, build: Path) -> None:
    link = root / CURRENT
    tmp = root / f".{CURRENT}.{secrets.token_hex(4)}"
    tmp.symlink_to(Path(BUILDS) / build.name, target_is_directory=True)
    tmp.replace(link)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(root: Path, keep: set[str]) -> None:
    """Keep the newest builds (the current and the one before among them); remove older."""
    builds = sorted(
        (p for p in (root / BUILDS).iterdir() if not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    for old in builds[:-KEEP_BUILDS]:
        if old.name not in keep:
            _remove(old)
    for stale in (root / BUILDS).glob(".*.partial"):
        _remove(stale)


def _remove(path: Path) -> None:
    if not path.exists():
        return
    _set_folder_modes(path, 0o755)
    shutil.rmtree(path)


def _set_folder_modes(top: Path, mode: int) -> None:
    """`mode` on `top` and every folder below it (deepest first); files keep theirs."""
    # Readable by everyone on purpose: the summaries container reads as its own user.
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        folder.chmod(mode)
    top.chmod(mode)
