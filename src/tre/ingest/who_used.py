"""The key holder's answer to "who used my data?": given one hospital patient id, the
projects whose sealed dataset versions include that patient, under which permits, for
which periods, and whether the patient has opted out.

Invariant: the answer is complete and verified, or there is none. Every ingested version
a permit grants is read, its manifest checked against the policy's and the ingest
record's checksum and every file read checked against the manifest; the pseudonyms
found must account for the patients the manifest counts. The answer never holds a
pseudonym or key material, and the lookup runs only where the keys are kept.

It lives with ingest because it needs what only the ingest host has: the pseudonym keys
and the sealed versions' manifests. The CLI offers it as `tre publish who-used`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from datetime import date
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError

from tre.ingest.manifest import MANIFEST_NAME, FileEntry, IngestRecord, VersionManifest
from tre.ingest.version import VersionPaths
from tre.policy import (
    Dataset,
    DatasetVersion,
    Modality,
    Permit,
    PermitStatus,
    Policy,
    Project,
    Purpose,
)
from tre.pseudonym import (
    PSEUDONYM_PATTERN,
    KeyCustodyError,
    MasterKey,
    OptOutKind,
    OptOutRegister,
    OptOutRegisterError,
    PatientIdError,
    Pseudonymiser,
    default_master_key_path,
    derive_project_key,
    load_master_key,
    normalise_patient_id,
)
from tre.pseudonym.patient_ids import encode_patient_id
from tre.settings import Settings

EMR_PSEUDONYM_COLUMN = "pseudonym"
"""The column of every EMR table that holds the pseudonym (`tre.ingest.emr.PSEUDONYM_COLUMN`;
not imported from there, which would load presidio for every lookup)."""

SINGLE_CELL_PATIENT_COLUMN = "patient"
"""The cell annotation naming each cell's patient (`tre.ingest.single_cell.PATIENT`)."""

VCF_SUFFIXES = (".vcf.gz", ".vcf", ".bcf")

_GROUP_OTHER = 0o077
_TOKEN_SPLIT = re.compile(r"[^0-9A-Za-z]+")


class WhoUsedError(Exception):
    """The lookup cannot give a complete, verified answer; the message names the input
    (the hospital id's problem, a key file, a dataset version, a file) and what is wrong.

    Messages never hold a hospital id or key material, and pseudonyms (file paths of
    imaging and genomics versions hold them) are masked as `<pseudonym>`.
    """

    def __init__(self, message: str) -> None:
        super().__init__(PSEUDONYM_PATTERN.sub("<pseudonym>", message))


class LookupNotAllowed(WhoUsedError):
    """This host does not keep the pseudonym keys as key custody demands, so it may not
    look patients up."""


class MalformedHospitalId(WhoUsedError, PatientIdError):
    """The hospital id given is not one the normaliser accepts (see `patient_ids`)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetUse(_Model):
    """A dataset version, prepared for one project, that included the patient."""

    dataset: str
    title: str
    version: str
    version_created: date
    modality: Modality


class PermitUse(_Model):
    """One permit under which a project could use versions that included the patient."""

    permit: str
    access_body_reference: str
    issued_by: str
    issued: date
    start: date
    expiry: date
    """The last day the permit grants access, unless revoked earlier."""
    revoked_from: date | None
    """The first day on which a revoked permit grants nothing."""
    status: PermitStatus
    active: bool
    """True if the permit grants access on the day of the lookup."""
    datasets: tuple[DatasetUse, ...]


class ProjectUse(_Model):
    """A project whose data included the patient, with the permits that granted it."""

    project: str
    title: str
    lay_summary: str
    purpose: Purpose
    purpose_article: str
    purpose_label: str
    permits: tuple[PermitUse, ...]


class OptOutPeriod(_Model):
    """A period in which the patient was (or will be) opted out."""

    start: date
    """The day the opt-out took effect."""
    end: date | None
    """The day the opt-out was withdrawn (participating again from then); None: still."""


class OptOutStatus(_Model):
    opted_out: bool
    """Opted out on the day of the lookup."""
    since: date | None
    """When the opt-out in force took effect (None when not opted out)."""
    periods: tuple[OptOutPeriod, ...] = ()


class VersionRef(_Model):
    """A dataset version a permit grants that has not been prepared (ingested) yet."""

    project: str
    permit: str
    dataset: str
    version: str


class UsageReport(_Model):
    """The answer to "who used my data?" for one patient, without naming them.

    It holds no hospital id and no pseudonym: the data manager knows whom they asked
    about, and a pseudonym would let one project's data be linked to another's.
    """

    site: str
    data_holder: str
    checked_on: date
    projects: tuple[ProjectUse, ...]
    opt_out: OptOutStatus
    versions_checked: int
    """Prepared dataset versions read to give this answer."""
    not_ingested: tuple[VersionRef, ...] = ()
    notes: tuple[str, ...] = ()
    """Plain-language notes for the patient (opt-out, what the answer does not cover)."""
    warnings: tuple[str, ...] = ()
    """Findings the data manager must act on (e.g. a permit issued after the opt-out)."""

    @property
    def used(self) -> bool:
        return bool(self.projects)


# -- where the lookup may run ----------------------------------------------------------


def check_lookup_allowed(settings: Settings) -> None:
    """Raise `LookupNotAllowed` unless this host keeps the keys as key custody demands:
    `settings.keys_dir` is a real folder (not a link), readable by this user, and closed
    to group and others (mode 0700). Nothing is created or changed."""
    keys_dir = settings.keys_dir
    here = "the lookup runs only on the ingest host, where the pseudonym keys are kept"
    try:
        st = keys_dir.lstat()
    except FileNotFoundError:
        raise LookupNotAllowed(
            f"{keys_dir}: there is no keys folder on this host; {here}"
        ) from None
    except OSError as exc:
        raise LookupNotAllowed(f"{keys_dir}: cannot read the keys folder: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise LookupNotAllowed(
            f"{keys_dir}: the keys folder is a symbolic link; key custody requires a real "
            "folder with mode 0700"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise LookupNotAllowed(f"{keys_dir}: the keys folder is not a folder; {here}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHER:
        raise LookupNotAllowed(
            f"{keys_dir}: the keys folder has mode {mode:04o}, so group or others can reach "
            f"it; key custody requires mode 0700 (chmod 700 {keys_dir}) before any lookup"
        )
    if not os.access(keys_dir, os.R_OK | os.X_OK):
        raise LookupNotAllowed(f"{keys_dir}: this user cannot read the keys folder; {here}")


def can_lookup(settings: Settings) -> bool:
    """True if `check_lookup_allowed` would let the lookup run on this host."""
    try:
        check_lookup_allowed(settings)
    except LookupNotAllowed:
        return False
    return True


# -- the lookup --------------------------------------------------------------------------


def who_used(settings: Settings, policy: Policy, hospital_id: str, *, today: date) -> UsageReport:
    """Which projects' dataset versions include the patient with `hospital_id`, under
    which permits and periods, and whether the patient is opted out on `today`.

    Runs only on the ingest host (`check_lookup_allowed`). For each project with a
    permit, the patient's pseudonym for that project is computed here with the project
    key (derived from the site master key, which never leaves this process) and looked
    for in every version of the project's permits that ingest has sealed. The pseudonym
    is neither printed nor returned: pseudonyms differ per project so that projects
    cannot link their data, and a pseudonym in an answer would let whoever holds the
    answer find the patient in a project's data and link them across projects.

    A hospital id nobody's data included gives an empty answer, not an error (the
    answer cannot tell a mistyped id from a patient who was never included). Raises
    `WhoUsedError`, naming the input, when the answer could be incomplete or wrong:
    a malformed hospital id (`MalformedHospitalId`), a missing or unreadable master key
    (every project key derives from it), an unreadable opt-out register, or a sealed
    version whose folder, manifest or files are missing, altered or unreadable.
    """
    check_lookup_allowed(settings)
    patient_id = _valid_hospital_id(hospital_id)
    opt_out = _opt_out_status(settings, patient_id, today)
    master = _master_key(settings)
    projects: list[ProjectUse] = []
    not_ingested: list[VersionRef] = []
    warnings: list[str] = []
    checked = 0
    for project_id in sorted({p.project for p in policy.permits}):
        project = _project(policy, project_id)
        # Computed here, compared here, never stored: see the docstring.
        pseudonym = Pseudonymiser(derive_project_key(master, project_id)).pseudonym(patient_id)
        includes: dict[tuple[str, str], bool | None] = {}  # None: not ingested
        uses: list[PermitUse] = []
        permits = [p for p in policy.permits if p.project == project_id]
        for permit in sorted(permits, key=lambda p: (p.start, p.id)):
            datasets: list[DatasetUse] = []
            for grant in permit.datasets:
                dataset, version = _granted(policy, permit, grant.dataset, grant.version)
                key = (dataset.id, version.id)
                if key not in includes:
                    members = _version_pseudonyms(settings, project_id, dataset, version, master)
                    includes[key] = None if members is None else pseudonym in members
                    checked += members is not None
                if includes[key] is None:
                    not_ingested.append(
                        VersionRef(
                            project=project_id,
                            permit=permit.id,
                            dataset=dataset.id,
                            version=version.id,
                        )
                    )
                elif includes[key]:
                    datasets.append(_dataset_use(dataset, version))
            if datasets:
                uses.append(_permit_use(permit, datasets, today))
                warnings += _art71_warnings(permit, datasets, opt_out)
        if uses:
            projects.append(_project_use(project, uses))
    return UsageReport(
        site=policy.site.name,
        data_holder=policy.site.data_holder,
        checked_on=today,
        projects=tuple(projects),
        opt_out=opt_out,
        versions_checked=checked,
        not_ingested=tuple(not_ingested),
        notes=_notes(opt_out, today, used=bool(projects)),
        warnings=tuple(warnings),
    )


def _valid_hospital_id(hospital_id: str) -> str:
    try:
        normalised = normalise_patient_id(hospital_id)
        encode_patient_id(normalised)
    except PatientIdError as exc:
        raise MalformedHospitalId(f"hospital id: {exc}") from None
    return normalised


def _master_key(settings: Settings) -> MasterKey:
    try:
        return load_master_key(default_master_key_path(settings.keys_dir))
    except KeyCustodyError as exc:
        # Every project key derives from the master key: without it no pseudonym can be
        # computed, and an answer without them would wrongly say "not used".
        raise WhoUsedError(f"cannot compute the patient's pseudonyms: {exc}") from exc


def _opt_out_status(settings: Settings, patient_id: str, today: date) -> OptOutStatus:
    register = OptOutRegister.in_keys_dir(settings.keys_dir)
    try:
        history = register.history(patient_id)
    except OptOutRegisterError as exc:
        raise WhoUsedError(f"cannot read the opt-out register: {exc}") from exc
    periods: list[OptOutPeriod] = []
    for event in history:  # in effective order; the register enforces out, in, out, ...
        if event.kind is OptOutKind.opt_out:
            periods.append(OptOutPeriod(start=event.effective, end=None))
        elif periods:
            periods[-1] = periods[-1].model_copy(update={"end": event.effective})
    current = next((p for p in periods if _covers(p, today)), None)
    return OptOutStatus(
        opted_out=current is not None,
        since=current.start if current else None,
        periods=tuple(periods),
    )


def _covers(period: OptOutPeriod, day: date) -> bool:
    return period.start <= day and (period.end is None or day < period.end)


def _project(policy: Policy, project_id: str) -> Project:
    project = policy.project(project_id)
    if project is None:
        raise WhoUsedError(f"the policy has permits for project '{project_id}' but no such project")
    return project


def _granted(
    policy: Policy, permit: Permit, dataset_id: str, version_id: str
) -> tuple[Dataset, DatasetVersion]:
    dataset = policy.dataset(dataset_id)
    version = dataset.version(version_id) if dataset is not None else None
    if dataset is None or version is None:
        raise WhoUsedError(
            f"permit '{permit.id}' grants dataset '{dataset_id}' version '{version_id}', "
            "which the policy does not list"
        )
    return dataset, version


def _dataset_use(dataset: Dataset, version: DatasetVersion) -> DatasetUse:
    return DatasetUse(
        dataset=dataset.id,
        title=dataset.title,
        version=version.id,
        version_created=version.created,
        modality=dataset.modality,
    )


def _permit_use(permit: Permit, datasets: list[DatasetUse], today: date) -> PermitUse:
    status = permit.status(today)
    return PermitUse(
        permit=permit.id,
        access_body_reference=permit.access_body_reference,
        issued_by=permit.issued_by,
        issued=permit.issued,
        start=permit.start,
        expiry=permit.expiry,
        revoked_from=permit.revoked.effective if permit.revoked else None,
        status=status,
        active=status is PermitStatus.active,
        datasets=tuple(datasets),
    )


def _project_use(project: Project, uses: list[PermitUse]) -> ProjectUse:
    return ProjectUse(
        project=project.id,
        title=project.title,
        lay_summary=project.lay_summary,
        purpose=project.purpose,
        purpose_article=project.purpose.article,
        purpose_label=project.purpose.label,
        permits=tuple(uses),
    )


def _art71_warnings(permit: Permit, datasets: list[DatasetUse], opt_out: OptOutStatus) -> list[str]:
    # Art. 71: after an opt-out the data may not be made available under a permit
    # issued from then on; permits issued before it are not affected.
    period = next((p for p in opt_out.periods if _covers(p, permit.issued)), None)
    if period is None:
        return []
    names = ", ".join(f"'{d.dataset}' version '{d.version}'" for d in datasets)
    return [
        f"permit '{permit.id}' was issued on {permit.issued}, while the patient's opt-out "
        f"(effective {period.start}) was in force, yet it grants {names}, which include the "
        "patient: under EHDS Art. 71 their data may not be made available under it; "
        "grant a version ingested after the opt-out instead"
    ]


def _notes(opt_out: OptOutStatus, today: date, *, used: bool) -> tuple[str, ...]:
    notes: list[str] = []
    if opt_out.since is not None:
        notes.append(
            f"You opted out of the use of your data for research from {_day(opt_out.since)}. "
            "Every dataset prepared since that day leaves your data out. Datasets prepared "
            "before it are never changed, so they may still include your data: projects "
            "whose permits were issued before your opt-out may go on using them until "
            "their permits end (EHDS Art. 71)."
        )
    else:
        notes.append(
            "You have not opted out. You can opt out at any time, without giving a reason, "
            "and change your mind later (EHDS Art. 71); datasets prepared after an opt-out "
            "leave your data out."
        )
        pending = [p for p in opt_out.periods if p.start > today]
        if pending:
            notes.append(f"The opt-out you asked for takes effect on {_day(pending[-1].start)}.")
    ended = [p for p in opt_out.periods if p.end is not None and p.end <= today]
    if ended:
        notes.append(
            "You opted out earlier and withdrew it: "
            + "; ".join(f"from {_day(p.start)} to {_day(p.end)}" for p in ended if p.end)
            + ". Datasets prepared in that time leave your data out."
        )
    if not used:
        notes.insert(
            0, "None of the datasets prepared for research projects so far includes your data."
        )
    return tuple(notes)


# -- reading a sealed version ------------------------------------------------------------


def _version_pseudonyms(
    settings: Settings,
    project_id: str,
    dataset: Dataset,
    version: DatasetVersion,
    master: MasterKey,
) -> frozenset[str] | None:
    """Every pseudonym in the sealed version; None if it was never ingested."""
    paths = VersionPaths(settings.var_dir, version.folder(dataset.id, project_id))
    what = f"dataset '{dataset.id}' version '{version.id}' of project '{project_id}'"
    record = _ingest_record(paths.record_path, what)
    folder = paths.version_dir
    if not folder.exists() and not folder.is_symlink():
        if version.manifest_sha256 is None and record is None:
            return None  # not ingested yet: no data of anyone went to the project
        sealed = (
            "the policy pins its manifest" if version.manifest_sha256 else "it has an ingest record"
        )
        raise WhoUsedError(
            f"{folder}: the folder of {what} is missing, though it was sealed ({sealed}); "
            "cannot tell whether it included the patient"
        )
    if folder.is_symlink() or not folder.is_dir():
        raise WhoUsedError(f"{folder}: the folder of {what} is not a folder")
    manifest = _verified_manifest(folder / MANIFEST_NAME, version, record, what)
    expected = (project_id, dataset.id, version.id, dataset.modality.value)
    if (manifest.project, manifest.dataset, manifest.version, manifest.modality) != expected:
        raise WhoUsedError(
            f"{folder / MANIFEST_NAME}: the manifest describes dataset '{manifest.dataset}' "
            f"version '{manifest.version}' of project '{manifest.project}' "
            f"({manifest.modality}), not {what}"
        )
    if manifest.key_id != master.key_id:
        raise WhoUsedError(
            f"{folder / MANIFEST_NAME}: {what} was pseudonymised with master key "
            f"{manifest.key_id}, but this host's key is {master.key_id}; the pseudonyms "
            "computed here would not match"
        )
    found: set[str] = set()
    for entry in manifest.files:
        path = _listed_file(folder, entry, what)
        found.update(_pseudonym_tokens(entry.path))
        found.update(_content_pseudonyms(dataset.modality, path, entry, what))
    _check_accounted(found, manifest, paths.quarantine_dir, folder, what)
    return frozenset(found)


def _ingest_record(path: Path, what: str) -> IngestRecord | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WhoUsedError(
            f"{path}: cannot read the ingest record of {what}: {exc.strerror}"
        ) from exc
    try:
        return IngestRecord.model_validate_json(data)
    except ValidationError as exc:
        raise WhoUsedError(
            f"{path}: the ingest record of {what} is not valid ({exc.error_count()} problem(s))"
        ) from None


def _verified_manifest(
    path: Path, version: DatasetVersion, record: IngestRecord | None, what: str
) -> VersionManifest:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WhoUsedError(f"{path}: the manifest of {what} is missing") from None
    except OSError as exc:
        raise WhoUsedError(f"{path}: cannot read the manifest of {what}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if version.manifest_sha256 is not None and digest != version.manifest_sha256:
        raise WhoUsedError(
            f"{path}: the manifest of {what} has SHA-256 {digest}, but the policy pins "
            f"{version.manifest_sha256}; the version may have been altered"
        )
    if record is not None and digest != record.manifest_sha256:
        raise WhoUsedError(
            f"{path}: the manifest of {what} has SHA-256 {digest}, but its ingest record "
            f"says {record.manifest_sha256}; the version may have been altered"
        )
    if version.manifest_sha256 is None and record is None:
        raise WhoUsedError(
            f"{path}: the manifest of {what} cannot be verified: the policy pins no "
            "manifest_sha256 and this host has no ingest record for it"
        )
    try:
        return VersionManifest.model_validate_json(data)
    except ValidationError as exc:
        raise WhoUsedError(
            f"{path}: the manifest of {what} is not valid ({exc.error_count()} problem(s))"
        ) from None


def _listed_file(folder: Path, entry: FileEntry, what: str) -> Path:
    relative = PurePosixPath(entry.path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise WhoUsedError(f"{folder / MANIFEST_NAME}: lists a file outside {what}: {entry.path!r}")
    path = folder.joinpath(*relative.parts)
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise WhoUsedError(f"{path}: a file the manifest of {what} lists is missing") from None
    except OSError as exc:
        raise WhoUsedError(f"{path}: cannot read a file of {what}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise WhoUsedError(f"{path}: a file of {what} is not a regular file")
    if st.st_size != entry.size:
        raise WhoUsedError(
            f"{path}: has {st.st_size} bytes, but the manifest of {what} says {entry.size}; "
            "the version may have been altered"
        )
    return path


def _pseudonym_tokens(text: str) -> set[str]:
    """Pseudonyms named in a file path or a sample name (`<pseudonym>_2`, `<p>/<p>_1.tif`)."""
    return {t for t in _TOKEN_SPLIT.split(text) if PSEUDONYM_PATTERN.fullmatch(t)}


def _content_pseudonyms(modality: Modality, path: Path, entry: FileEntry, what: str) -> set[str]:
    """Pseudonyms a file names inside it, where its path does not: EMR tables, cohort VCFs,
    single-cell files. Each file read is first checked against the manifest's checksum."""
    name = path.name
    if modality is Modality.emr and name.endswith(".parquet"):
        reader = _parquet_pseudonyms
    elif modality is Modality.vcf and name.endswith(VCF_SUFFIXES):
        reader = _vcf_pseudonyms
    elif modality is Modality.single_cell and name.endswith(".h5ad"):
        reader = _h5ad_pseudonyms
    else:
        return set()
    _check_sha256(path, entry, what)
    values = reader(path, what)
    found: set[str] = set()
    for value in values:
        tokens = _pseudonym_tokens(value)
        if not tokens:
            raise WhoUsedError(f"{path}: a patient of {what} is not named by a pseudonym")
        found |= tokens
    return found


def _check_sha256(path: Path, entry: FileEntry, what: str) -> None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise WhoUsedError(f"{path}: cannot read a file of {what}: {exc.strerror}") from exc
    if digest.hexdigest() != entry.sha256:
        raise WhoUsedError(
            f"{path}: its SHA-256 differs from the manifest of {what}; the version may have "
            "been altered"
        )


def _parquet_pseudonyms(path: Path, what: str) -> Iterable[str]:
    import pyarrow.compute as pc  # noqa: PLC0415 - only when an EMR version is read
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        if EMR_PSEUDONYM_COLUMN not in pq.read_schema(path).names:
            raise WhoUsedError(
                f"{path}: a table of {what} has no '{EMR_PSEUDONYM_COLUMN}' column, so its "
                "patients cannot be told"
            )
        column = pq.read_table(path, columns=[EMR_PSEUDONYM_COLUMN]).column(0)
    except (OSError, ValueError) as exc:
        raise WhoUsedError(f"{path}: cannot read a table of {what}: {exc}") from exc
    values: list[object] = pc.unique(column).to_pylist()
    return [_text(value, path, what) for value in values]


def _vcf_pseudonyms(path: Path, what: str) -> Iterable[str]:
    import pysam  # noqa: PLC0415 - only when a VCF version is read

    try:
        with pysam.VariantFile(str(path)) as variants:
            samples: list[object] = list(variants.header.samples)
    except (OSError, ValueError) as exc:
        raise WhoUsedError(f"{path}: cannot read the header of a VCF of {what}: {exc}") from exc
    return [_text(value, path, what) for value in samples]


def _h5ad_pseudonyms(path: Path, what: str) -> Iterable[str]:
    import anndata  # noqa: PLC0415 - only when a single-cell version is read

    try:
        cells = anndata.read_h5ad(path, backed="r")
    except (OSError, ValueError, KeyError) as exc:
        raise WhoUsedError(f"{path}: cannot read a single-cell file of {what}: {exc}") from exc
    try:
        if SINGLE_CELL_PATIENT_COLUMN not in cells.obs.columns:
            raise WhoUsedError(
                f"{path}: a single-cell file of {what} has no '{SINGLE_CELL_PATIENT_COLUMN}' "
                "annotation, so its patients cannot be told"
            )
        values: list[object] = list(cells.obs[SINGLE_CELL_PATIENT_COLUMN].astype("object").unique())
    finally:
        cells.file.close()
    return [_text(value, path, what) for value in values]


def _text(value: object, path: Path, what: str) -> str:
    if not isinstance(value, str):
        raise WhoUsedError(f"{path}: a patient of {what} is missing or not text")
    return value


def _check_accounted(
    found: set[str], manifest: VersionManifest, quarantine: Path, folder: Path, what: str
) -> None:
    """Fail unless the pseudonyms found account for the patients the manifest counts.

    A patient whose every file was quarantined (possible burned-in text) is counted but
    has no file in the version; the quarantine folder, while kept, names them.
    """
    counts = manifest.counts
    held: set[str] = set()
    if counts.quarantined and quarantine.is_dir():
        held = {t for p in quarantine.rglob("*") for t in _pseudonym_tokens(p.name)}
    accounted = len(found | held)
    if len(found) > counts.patients or accounted > counts.patients:
        raise WhoUsedError(
            f"{folder}: {what} names more patients ({accounted}) than its manifest counts "
            f"({counts.patients}); the version may have been altered"
        )
    if counts.patients - accounted > counts.quarantined:
        raise WhoUsedError(
            f"{folder}: only {accounted} of the {counts.patients} patients the manifest of "
            f"{what} counts could be found in its files; cannot tell reliably whether it "
            "included the patient"
        )


# -- words for the patient -----------------------------------------------------------------


def render_text(report: UsageReport) -> str:
    """The answer in plain words, addressed to the patient; findings for the data manager
    (if any) follow in a separate, marked section. Holds no id and no pseudonym."""
    lines = [
        f"Use of your health data for research at {report.site}",
        f"(answer of {report.data_holder}, as on {_day(report.checked_on)})",
    ]
    if report.projects:
        count = len(report.projects)
        lines += [
            "",
            f"Your data were included in the data given to {count} research "
            f"project{'s' if count > 1 else ''}. Each project got them under a code made for "
            "that project only, never with your name or hospital number.",
        ]
        for n, project in enumerate(report.projects, start=1):
            lines += ["", f"{n}. {project.title}", f"   What it is about: {project.lay_summary}"]
            lines.append(f"   Why: {project.purpose_label} (EHDS {project.purpose_article})")
            for permit in project.permits:
                lines.append(f"   {_permit_sentence(permit)}")
                lines += [
                    f"   - {use.title}, version {use.version}, prepared {_day(use.version_created)}"
                    for use in permit.datasets
                ]
    for note in report.notes:  # with no project, the first note says so
        lines += ["", note]
    waiting = len({(r.project, r.dataset, r.version) for r in report.not_ingested})
    lines += [
        "",
        "This answer says which projects were given your data, why and for how long. It "
        "does not say which researchers looked at them, what they analysed or found: "
        "projects publish only results checked to be about groups, never about one person.",
        "",
        f"Checked: {report.versions_checked} dataset version(s) prepared for projects"
        + (
            f"; {waiting} granted but not prepared yet, so holding no one's data."
            if waiting
            else "."
        ),
    ]
    if report.warnings:
        lines += ["", "For the data manager (not for the patient):"]
        lines += [f"- {warning}" for warning in report.warnings]
    return "\n".join(lines) + "\n"


def _permit_sentence(permit: PermitUse) -> str:
    issued = f"Permit {permit.access_body_reference} from {permit.issued_by}"
    if permit.status is PermitStatus.revoked and permit.revoked_from is not None:
        return (
            f"{issued}: from {_day(permit.start)}; withdrawn from {_day(permit.revoked_from)}, "
            "so the project may no longer use your data."
        )
    if permit.status is PermitStatus.not_started:
        return (
            f"{issued}: the project may use the data from {_day(permit.start)} "
            f"to {_day(permit.expiry)}."
        )
    if permit.active:
        return (
            f"{issued}: from {_day(permit.start)} to {_day(permit.expiry)}; "
            "the project may still use your data."
        )
    return (
        f"{issued}: from {_day(permit.start)} to {_day(permit.expiry)}; it has ended, "
        "so the project may no longer use your data."
    )


def _day(day: date) -> str:
    return f"{day.day} {day:%B %Y}"
