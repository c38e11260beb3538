"""One ingest run: a source folder in, one sealed, pseudonymised dataset version out.

The run refuses to prepare data no permit asks for, loads the key and the
opt-out register, lets the dataset's modality do its work in a staging folder,
and seals the version only if every step succeeded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tre.policy import Dataset, DatasetVersion, PermitStatus, Policy
from tre.pseudonym import (
    DateShifter,
    OptOutRegister,
    Pseudonymiser,
    UidMapper,
    default_master_key_path,
    default_register_path,
    derive_project_key,
    load_master_key,
)
from tre.settings import Settings

from .context import IngestContext, ProgressFn, ProjectKeys
from .errors import IngestError
from .manifest import (
    MANIFEST_NAME,
    Counts,
    IngestRecord,
    RecordEntry,
    Rejected,
    VersionManifest,
    dump,
)
from .modalities import ingester
from .patients import PatientIndex
from .version import StagedVersion, VersionPaths

GRANTING = frozenset({PermitStatus.active, PermitStatus.not_started})


@dataclass(frozen=True)
class IngestResult:
    manifest: VersionManifest
    manifest_sha256: str
    version_dir: Path
    record_path: Path


def ingest_version(
    settings: Settings,
    policy: Policy,
    project_id: str,
    dataset_id: str,
    version_id: str,
    *,
    source: Path | None = None,
    patient_index: Path | None = None,
    continue_on_error: bool = False,
    today: date | None = None,
    progress: ProgressFn | None = None,
) -> IngestResult:
    """Ingest one dataset version for one project; raise `IngestError` saying why not."""
    today = today or date.today()
    dataset, version = _permitted(policy, project_id, dataset_id, version_id, today)
    source_dir = _source_dir(settings, version, source)
    keys = project_keys(settings, project_id, max_shift_days=policy.site.date_shift_max_days)
    register_path = default_register_path(settings.keys_dir)
    register = OptOutRegister(register_path) if register_path.exists() else None
    index_csv = patient_index or settings.silos_dir / "emr" / "patients.csv"
    patients = PatientIndex.load(index_csv, register, today)

    paths = VersionPaths(settings.var_dir, version.folder(dataset.id, project_id))
    with StagedVersion(paths) as staged:
        ctx = IngestContext(
            project=project_id,
            dataset=dataset,
            version=version,
            source_dir=source_dir,
            out_dir=staged.out_dir,
            quarantine_dir=staged.quarantine_dir,
            keys=keys,
            patients=patients,
            continue_on_error=continue_on_error,
            progress=progress,
        )
        ingester(dataset.modality)(ctx)
        manifest = _manifest(ctx, staged)
        manifest_bytes = dump(manifest)
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        record = IngestRecord(
            project=project_id,
            dataset=dataset.id,
            version=version.id,
            manifest_sha256=digest,
            rejected=tuple(RecordEntry(source=s, reason=p) for s, _, p in ctx.report.rejected),
            quarantined=tuple(RecordEntry(source=s, reason=r) for s, r in ctx.report.quarantined),
        )
        staged.seal(manifest_bytes, MANIFEST_NAME, dump(record))
    return IngestResult(manifest, digest, paths.version_dir, paths.record_path)


def granted_versions(
    settings: Settings, policy: Policy, project_id: str, today: date
) -> list[tuple[str, str, Path]]:
    """(dataset, version, folder) for every version a current permit of the project grants."""
    seen: dict[tuple[str, str], Path] = {}
    for permit in policy.permits:
        if permit.project != project_id or permit.status(today) not in GRANTING:
            continue
        for grant in permit.datasets:
            dataset = policy.dataset(grant.dataset)
            version = dataset.version(grant.version) if dataset else None
            if dataset is None or version is None:
                continue
            folder = VersionPaths(settings.var_dir, version.folder(dataset.id, project_id))
            seen[(dataset.id, version.id)] = folder.version_dir
    return [(d, v, path) for (d, v), path in sorted(seen.items())]


def project_keys(settings: Settings, project_id: str, *, max_shift_days: int = 365) -> ProjectKeys:
    """The project's keyed transforms, from the site master key on this host."""
    master = load_master_key(default_master_key_path(settings.keys_dir))
    project_key = derive_project_key(master, project_id)
    return ProjectKeys(
        pseudonymiser=Pseudonymiser(project_key),
        dates=DateShifter(project_key, max_days=max_shift_days),
        uids=UidMapper(project_key),
        key_id=master.key_id,
    )


def _permitted(
    policy: Policy, project_id: str, dataset_id: str, version_id: str, today: date
) -> tuple[Dataset, DatasetVersion]:
    if policy.project(project_id) is None:
        known = ", ".join(p.id for p in policy.projects)
        raise IngestError(f"unknown project '{project_id}' (known: {known})")
    dataset = policy.dataset(dataset_id)
    if dataset is None:
        known = ", ".join(d.id for d in policy.datasets)
        raise IngestError(f"unknown dataset '{dataset_id}' (known: {known})")
    version = dataset.version(version_id)
    if version is None:
        known = ", ".join(v.id for v in dataset.versions) or "none"
        raise IngestError(f"dataset '{dataset_id}' has no version '{version_id}' (known: {known})")
    granting = [
        p
        for p in policy.permits
        if p.project == project_id
        and p.status(today) in GRANTING
        and any(g.dataset == dataset_id and g.version == version_id for g in p.datasets)
    ]
    if not granting:
        raise IngestError(
            f"no current permit of project '{project_id}' grants dataset '{dataset_id}' "
            f"version '{version_id}'; ingest prepares only data a permit grants"
        )
    return dataset, version


def _source_dir(settings: Settings, version: DatasetVersion, source: Path | None) -> Path:
    if source is None:
        if version.source is None:
            raise IngestError(
                f"version '{version.id}' names no source folder; give --source or set "
                "'source' in datasets.yaml"
            )
        source = settings.silos_dir / version.source
    if not source.is_dir():
        raise IngestError(f"{source}: source folder does not exist")
    return source


def _manifest(ctx: IngestContext, staged: StagedVersion) -> VersionManifest:
    report = ctx.report
    files = staged.files()
    source_digest = hashlib.sha256(
        "\n".join(sorted(sha for _, sha in report.source_files)).encode()
    ).hexdigest()
    return VersionManifest(
        project=ctx.project,
        dataset=ctx.dataset.id,
        version=ctx.version.id,
        modality=ctx.dataset.modality.value,
        key_id=ctx.keys.key_id,
        deidentification=ctx.options.model_dump(mode="json"),
        source_digest=source_digest,
        counts=Counts(
            source_files=len({path for path, _ in report.source_files}),
            output_files=len(files),
            patients=len(report.patients),
            excluded_opt_out=len(report.excluded),
            rejected=len(report.rejected),
            quarantined=len(report.quarantined),
        ),
        removed=dict(sorted(report.removed.items())),
        changed=dict(sorted(report.changed.items())),
        rejected=tuple(Rejected(source_sha256=sha, problem=p) for _, sha, p in report.rejected),
        tools=dict(sorted(report.tools.items())),
        files=tuple(files),
    )
